//! The IAM policy a set of playbooks needs (`cordon policy`), the permissions
//! boundary for cordon's role, and the managed deny policy quarantine attaches.
//!
//! Pure: it reads the playbooks' steps and the tables in [`crate::action`]
//! (the permissions of the calls each action makes, the implied permissions no
//! call shows, the front doors' own) and scopes each permission to the
//! resources and condition keys AWS supports for it. Nothing here calls AWS.
//!
//! Every permission maps to one statement ([`Sid`]); a statement's resources
//! and conditions come from the Service Authorization Reference
//! (<https://docs.aws.amazon.com/service-authorization/latest/reference/reference_policies_actions-resources-contextkeys.html>),
//! cited per service where each statement's resources are built. Where the reference lists optional
//! resource types that a request may also be authorized against, a statement
//! lists every one of them: IAM denies a request unless *every* resource it
//! touches is allowed, so leaving an optional type out breaks the call while
//! adding it widens nothing. Statements and everything in them are sorted, so
//! the same playbooks and options always give byte-identical output.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use crate::action::{Action, ActionKind, FRONT_DOOR_PERMISSIONS, FrontDoor, ImpliedPermission};
use crate::ids::IdKind;
use crate::playbook::{Playbook, Step};

/// IAM policy language version.
pub const POLICY_LANGUAGE_VERSION: &str = "2012-10-17";
/// Stands in for the evidence bucket when none is given. Bucket names cannot
/// hold upper-case letters, so a policy deployed with it unchanged grants
/// nothing on S3 rather than something on the wrong bucket.
pub const EVIDENCE_BUCKET_PLACEHOLDER: &str = "REPLACE-WITH-EVIDENCE-BUCKET";
/// Key prefix of the run's evidence store and of the S3 journal (the CLI's and
/// Lambda's `cases/`): captures and Detective write under it.
pub const RUN_EVIDENCE_PREFIX: &str = "cases/";
/// IAM path of everything cordon owns: its role, its boundary, the quarantine
/// policy. The boundary forbids cordon to act on anything under it.
pub const CORDON_IAM_PATH: &str = "/cordon/";
/// Name of the managed deny-all policy `quarantine-user` attaches by default.
pub const QUARANTINE_POLICY_NAME: &str = "CordonQuarantineDenyAll";
/// The role cordon assumes in a finding's account when that is not its own
/// (the CLI's `--assume-role-name` default).
pub const RESPONDER_ROLE_NAME: &str = "cordon-responder";
/// Name suggested for the boundary policy (created under [`CORDON_IAM_PATH`]).
pub const BOUNDARY_POLICY_NAME: &str = "CordonPermissionsBoundary";

/// Why options or playbooks cannot give a policy.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// Not one of the partitions AWS has.
    #[error("partition `{0}` is not an AWS partition: use aws, aws-cn, aws-us-gov or * (any)")]
    Partition(String),
    /// Not a 12-digit account id.
    #[error("account `{0}` is not a 12-digit AWS account id: pass one, or * for any")]
    Account(String),
    /// Not shaped like a region name.
    #[error("region `{0}` is not an AWS region name such as eu-west-1: pass one, or * for any")]
    Region(String),
    /// Not a valid S3 bucket name.
    #[error(
        "evidence bucket `{0}` is not a valid S3 bucket name (3-63 lower-case letters, digits, dots and hyphens)"
    )]
    Bucket(String),
    /// Not a KMS key id, key ARN, alias name or alias ARN.
    #[error("evidence signing key `{0}` is not a KMS key id, key ARN, alias/NAME or alias ARN")]
    SigningKey(String),
    /// Not an SNS topic ARN.
    #[error("notify topic `{0}` is not an SNS topic ARN (arn:PARTITION:sns:REGION:ACCOUNT:NAME)")]
    Topic(String),
    /// A step parameter that ends up in an ARN would widen or break the policy.
    #[error(
        "playbook `{playbook}`, step `{step}`: {what} `{value}` cannot be scoped in a policy ({why}); fix the playbook"
    )]
    StepValue {
        /// The playbook's name.
        playbook: String,
        /// The step's id.
        step: String,
        /// Which parameter.
        what: &'static str,
        /// Its value.
        value: String,
        /// What is wrong with it.
        why: &'static str,
    },
    /// A permission in the action tables has no statement here: a cordon bug.
    #[error(
        "permission `{0}` has no statement in cordon's policy generator: report this as a cordon bug"
    )]
    Unscoped(String),
}

/// What narrows the policy's ARNs. `*` (any) by default.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyOptions {
    partition: String,
    account: String,
    region: String,
    evidence_bucket: Option<String>,
    notify_topic: Option<String>,
    evidence_signing_key: Option<String>,
}

impl Default for PolicyOptions {
    fn default() -> Self {
        Self {
            partition: "*".to_string(),
            account: "*".to_string(),
            region: "*".to_string(),
            evidence_bucket: None,
            notify_topic: None,
            evidence_signing_key: None,
        }
    }
}

impl PolicyOptions {
    /// Options for one partition, account and region (each `*` for any).
    pub fn new(partition: &str, account: &str, region: &str) -> Result<Self, PolicyError> {
        if !matches!(partition, "*" | "aws" | "aws-cn" | "aws-us-gov") {
            return Err(PolicyError::Partition(partition.to_string()));
        }
        if account != "*" && !(account.len() == 12 && account.bytes().all(|b| b.is_ascii_digit())) {
            return Err(PolicyError::Account(account.to_string()));
        }
        if region != "*" && !is_region(region) {
            return Err(PolicyError::Region(region.to_string()));
        }
        Ok(Self {
            partition: partition.to_string(),
            account: account.to_string(),
            region: region.to_string(),
            evidence_bucket: None,
            notify_topic: None,
            evidence_signing_key: None,
        })
    }

    /// The evidence bucket (and S3 journal) the role writes to.
    pub fn with_evidence_bucket(mut self, bucket: Option<&str>) -> Result<Self, PolicyError> {
        if let Some(bucket) = bucket {
            if !is_bucket_name(bucket) {
                return Err(PolicyError::Bucket(bucket.to_string()));
            }
            self.evidence_bucket = Some(bucket.to_string());
        }
        Ok(self)
    }

    /// The topic `notify` steps without their own `topic-arn` publish to.
    pub fn with_notify_topic(mut self, topic: Option<&str>) -> Result<Self, PolicyError> {
        if let Some(topic) = topic {
            if !is_topic_arn(topic) {
                return Err(PolicyError::Topic(topic.to_string()));
            }
            self.notify_topic = Some(topic.to_string());
        }
        Ok(self)
    }

    /// The asymmetric KMS key that signs evidence manifests
    /// (`--evidence-signing-key`): only then does the role get `kms:Sign`, and
    /// only on that key.
    pub fn with_evidence_signing_key(mut self, key: Option<&str>) -> Result<Self, PolicyError> {
        if let Some(key) = key {
            if !is_kms_key_ref(key) {
                return Err(PolicyError::SigningKey(key.to_string()));
            }
            self.evidence_signing_key = Some(key.to_string());
        }
        Ok(self)
    }

    fn evidence_bucket(&self) -> &str {
        self.evidence_bucket
            .as_deref()
            .unwrap_or(EVIDENCE_BUCKET_PLACEHOLDER)
    }

    /// `arn:<partition>:<service>:<region>:<account>:<rest>`.
    fn arn(&self, service: &str, rest: &str) -> String {
        format!(
            "arn:{}:{service}:{}:{}:{rest}",
            self.partition, self.region, self.account
        )
    }

    /// IAM ARNs carry no region.
    fn iam_arn(&self, rest: &str) -> String {
        format!("arn:{}:iam::{}:{rest}", self.partition, self.account)
    }

    /// S3 ARNs carry neither region nor account.
    fn s3_arn(&self, rest: &str) -> String {
        format!("arn:{}:s3:::{rest}", self.partition)
    }

    /// Snapshot ARNs carry no account (Service Authorization Reference, EC2 resource types).
    fn snapshot_arn(&self) -> String {
        format!("arn:{}:ec2:{}::snapshot/*", self.partition, self.region)
    }

    /// The endpoint host of `service` as `kms:ViaService` names it.
    fn via_service(&self, service: &str) -> String {
        let suffix = match self.partition.as_str() {
            "aws-cn" => "amazonaws.com.cn",
            "*" => "amazonaws.com*",
            _ => "amazonaws.com",
        };
        format!("{service}.{}.{suffix}", self.region)
    }

    /// EC2's service principal, as `iam:PassedToService` names it.
    fn ec2_principals(&self) -> Vec<String> {
        match self.partition.as_str() {
            "aws-cn" => vec!["ec2.amazonaws.com.cn".to_string()],
            "*" => vec![
                "ec2.amazonaws.com".to_string(),
                "ec2.amazonaws.com.cn".to_string(),
            ],
            _ => vec!["ec2.amazonaws.com".to_string()],
        }
    }

    /// The managed deny-all policy `quarantine-user` attaches by default.
    pub fn quarantine_policy_arn(&self) -> String {
        self.quarantine_policy_arn_named(QUARANTINE_POLICY_NAME)
    }

    /// The managed deny-all policy named `name` (a step's `policy-name`).
    pub fn quarantine_policy_arn_named(&self, name: &str) -> String {
        self.iam_arn(&format!("policy{CORDON_IAM_PATH}{name}"))
    }
}

fn is_region(region: &str) -> bool {
    let parts: Vec<&str> = region.split('-').collect();
    parts.len() >= 3
        && parts[..parts.len() - 1]
            .iter()
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_lowercase()))
        && parts[parts.len() - 1].bytes().all(|b| b.is_ascii_digit())
        && !parts[parts.len() - 1].is_empty()
}

fn is_bucket_name(name: &str) -> bool {
    (3..=63).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-')
        && name
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphanumeric())
        && name
            .bytes()
            .last()
            .is_some_and(|b| b.is_ascii_alphanumeric())
}

/// A KMS key id (UUID or `mrk-` multi-Region id), key ARN, `alias/NAME` or
/// alias ARN: characters that cannot widen a policy ARN or condition.
fn is_kms_key_ref(key: &str) -> bool {
    let id_ok = |id: &str| {
        !id.is_empty()
            && id.len() <= 64
            && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
    };
    let alias_ok = |name: &str| {
        !name.is_empty()
            && name.len() <= 250
            && !name.starts_with("aws/")
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"/_-".contains(&b))
    };
    if let Some(name) = key.strip_prefix("alias/") {
        return alias_ok(name);
    }
    if let Some(rest) = key.strip_prefix("arn:") {
        let parts: Vec<&str> = rest.splitn(5, ':').collect();
        let [partition, service, region, account, resource] = parts[..] else {
            return false;
        };
        return matches!(partition, "aws" | "aws-cn" | "aws-us-gov")
            && service == "kms"
            && is_region(region)
            && account.len() == 12
            && account.bytes().all(|b| b.is_ascii_digit())
            && match resource.split_once('/') {
                Some(("key", id)) => id_ok(id),
                Some(("alias", name)) => alias_ok(name),
                _ => false,
            };
    }
    id_ok(key)
}

fn is_topic_arn(arn: &str) -> bool {
    let parts: Vec<&str> = arn.split(':').collect();
    parts.len() == 6
        && parts[0] == "arn"
        && matches!(parts[1], "aws" | "aws-cn" | "aws-us-gov")
        && parts[2] == "sns"
        && is_region(parts[3])
        && parts[4].len() == 12
        && parts[4].bytes().all(|b| b.is_ascii_digit())
        && !parts[5].is_empty()
        && parts[5]
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
}

/// `Allow` or `Deny`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub enum Effect {
    /// Grants.
    Allow,
    /// Forbids, whatever else grants.
    Deny,
}

/// Condition operator → key → values.
pub type Conditions = BTreeMap<String, BTreeMap<String, Vec<String>>>;

/// One statement, in IAM's own (PascalCase) JSON shape: an IAM policy document
/// is AWS's format, not one of cordon's kebab-case ones.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Statement {
    /// Names the statement; unique within a document.
    pub sid: String,
    /// Allow or deny.
    pub effect: Effect,
    /// IAM actions, sorted, never a wildcard in an Allow.
    pub action: Vec<String>,
    /// Resource ARNs (patterns), sorted.
    pub resource: Vec<String>,
    /// Condition block, absent when empty.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub condition: Conditions,
}

/// An IAM policy document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PolicyDocument {
    /// Always [`POLICY_LANGUAGE_VERSION`].
    #[serde(rename = "Version")]
    pub version: &'static str,
    /// Sorted by `Sid`.
    #[serde(rename = "Statement")]
    pub statements: Vec<Statement>,
}

impl PolicyDocument {
    fn new(mut statements: Vec<Statement>) -> Self {
        statements.sort_by(|a, b| a.sid.cmp(&b.sid));
        Self {
            version: POLICY_LANGUAGE_VERSION,
            statements,
        }
    }

    /// Every action some `Allow` statement names, sorted.
    pub fn allowed_actions(&self) -> BTreeSet<String> {
        self.statements
            .iter()
            .filter(|s| s.effect == Effect::Allow)
            .flat_map(|s| s.action.iter().cloned())
            .collect()
    }
}

/// Why a permission is in the policy.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Need {
    /// A call the step's action makes.
    Step {
        /// Playbook name.
        playbook: String,
        /// Step id.
        step: String,
        /// The step's action.
        action: ActionKind,
    },
    /// AWS checks it on the caller's behalf for a call the step makes.
    Implied {
        /// Playbook name.
        playbook: String,
        /// Step id.
        step: String,
        /// The IAM action of the carrying call.
        carried_by: &'static str,
        /// Why.
        reason: &'static str,
    },
    /// The front door's own.
    FrontDoor {
        /// Which part.
        door: FrontDoor,
        /// Why.
        reason: &'static str,
    },
}

impl std::fmt::Display for Need {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Need::Step {
                playbook,
                step,
                action,
            } => write!(f, "{playbook}/{step} ({action})"),
            Need::Implied {
                playbook,
                step,
                carried_by,
                reason,
            } => write!(f, "{playbook}/{step}: implied by {carried_by}: {reason}"),
            Need::FrontDoor { door, reason } => write!(f, "front door ({door:?}): {reason}"),
        }
    }
}

/// A role policy and why each of its permissions is there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RolePolicy {
    /// The document to attach to cordon's role.
    pub document: PolicyDocument,
    /// `(statement sid, permission)` → what needs it.
    pub needs: BTreeMap<(String, String), BTreeSet<Need>>,
}

/// The statements of cordon's role policy. Each names one group of resources
/// (and conditions) that its actions are scoped to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Sid {
    /// Detach/attach, capacity and protection on Auto Scaling groups.
    AutoScalingGroups,
    /// Investigations in the region's behavior graph.
    DetectiveInvestigations,
    /// EC2 changes to instances, their ENIs and the isolation groups.
    Ec2Contain,
    /// EBS snapshots of the instance's volumes.
    Ec2Snapshots,
    /// Tags the tag step sets or restores on instances, volumes and ENIs.
    Ec2TagInstances,
    /// Tags applied while creating groups and snapshots.
    Ec2TagOnCreate,
    /// Findings of the region's detector.
    GuardDutyFindings,
    /// Reading instance profiles (the role behind an instance).
    IamInstanceProfiles,
    /// Passing a role back to EC2 when an instance profile is re-associated.
    IamPassRoleToEc2,
    /// Attaching exactly cordon's managed quarantine policy.
    IamQuarantinePolicy,
    /// Inline session-revocation policies on roles.
    IamRoles,
    /// Access keys, inline policies and login profiles of users.
    IamUsers,
    /// `kms:Sign` with the evidence signing key only.
    KmsSignEvidence,
    /// The reads that name no resource type, so AWS grants them on `*` only:
    /// EC2, Auto Scaling and load-balancer `Describe*`, `detective:ListGraphs`,
    /// `guardduty:ListDetectors`, `sts:GetCallerIdentity`. One statement, not
    /// one per service: the policy must fit one managed policy.
    ReadsAnyResource,
    /// KMS on the caller's behalf, through S3 (evidence and journal).
    KmsViaS3,
    /// KMS on the caller's behalf, through Secrets Manager (customer key).
    KmsViaSecretsManager,
    /// KMS on the caller's behalf, through SNS (encrypted topic).
    KmsViaSns,
    /// Registering and deregistering targets.
    LoadBalancingTargets,
    /// Evidence objects under the evidence prefixes.
    S3EvidenceObjects,
    /// Listing the versions under the evidence prefixes.
    S3EvidenceVersions,
    /// Listing the journal prefix.
    S3JournalList,
    /// Journal records.
    S3JournalRecords,
    /// Secrets holding rotated keys.
    SecretsManagerRotatedKeys,
    /// The responders' topic.
    SnsNotify,
    /// `sts:AssumeRole` of the responder role in a finding's other account.
    StsAssumeResponderRole,
    /// `ssm:GetParameter` of the pause switch.
    SsmPauseParameter,
    /// `ssm:SendCommand` of `AWS-RunShellScript` to instances (`capture-memory`).
    SsmRunCommand,
    /// `ssm:GetCommandInvocation`, `ssm:ListCommands`, `ssm:CancelCommand`:
    /// the memory acquisition's status, finding it after a lost answer, and
    /// stopping it past its budget.
    SsmCommandInvocations,
    /// A bucket's own public access block (`block-bucket-public-access`).
    S3BucketPublicAccessBlock,
}

/// Where a permission comes from, which decides its statement.
#[derive(Debug, Clone, Copy)]
enum Origin<'a> {
    Call,
    Implied(&'a ImpliedPermission),
    FrontDoor(FrontDoor),
}

/// What the playbooks ask for that ends up in ARNs and conditions.
#[derive(Debug, Default)]
struct Needs {
    /// Tag keys the tag steps set.
    tag_keys: BTreeSet<String>,
    /// `ec2:CreateAction` values: the calls that tag at creation.
    create_actions: BTreeSet<String>,
    /// Secret name prefixes of rotation steps.
    secret_prefixes: BTreeSet<String>,
    /// `(bucket, prefix)` the evidence goes to.
    evidence: BTreeSet<(String, String)>,
    /// Topics named by notify steps, and whether one names none.
    topics: BTreeSet<String>,
    topic_unnamed: bool,
    /// Names of the managed policies quarantine steps attach.
    quarantine_policies: BTreeSet<String>,
}

impl Sid {
    /// The statement's `Sid`.
    pub fn name(self) -> String {
        format!("{self:?}")
    }

    /// The statement a permission goes to, by where it comes from.
    fn of(permission: &str, origin: Origin<'_>) -> Option<Sid> {
        let (service, name) = permission.split_once(':')?;
        let sid = match (service, name, origin) {
            ("ec2", "CreateTags", Origin::Implied(_)) => Sid::Ec2TagOnCreate,
            ("ec2", "CreateTags" | "DeleteTags", _) => Sid::Ec2TagInstances,
            (
                "ec2",
                "CreateSnapshot"
                | "DeleteSnapshot"
                | "ModifySnapshotAttribute"
                | "DescribeSnapshotAttribute",
                _,
            ) => Sid::Ec2Snapshots,
            ("ec2", n, _) if n.starts_with("Describe") => Sid::ReadsAnyResource,
            (
                "ec2",
                "ModifyInstanceAttribute"
                | "ModifyNetworkInterfaceAttribute"
                | "CreateSecurityGroup"
                | "AuthorizeSecurityGroupIngress"
                | "AuthorizeSecurityGroupEgress"
                | "RevokeSecurityGroupEgress"
                | "AssociateIamInstanceProfile"
                | "DisassociateIamInstanceProfile"
                | "GetConsoleOutput"
                | "ModifyInstanceMetadataOptions"
                | "RevokeSecurityGroupIngress",
                _,
            ) => Sid::Ec2Contain,
            ("autoscaling", n, _) if n.starts_with("Describe") => Sid::ReadsAnyResource,
            (
                "autoscaling",
                "DetachInstances"
                | "AttachInstances"
                | "UpdateAutoScalingGroup"
                | "SetInstanceProtection",
                _,
            ) => Sid::AutoScalingGroups,
            ("elasticloadbalancing", n, _) if n.starts_with("Describe") => Sid::ReadsAnyResource,
            ("elasticloadbalancing", "RegisterTargets" | "DeregisterTargets", _) => {
                Sid::LoadBalancingTargets
            }
            (
                "iam",
                "ListAccessKeys"
                | "GetAccessKeyLastUsed"
                | "UpdateAccessKey"
                | "CreateAccessKey"
                | "DeleteAccessKey"
                | "GetUserPolicy"
                | "PutUserPolicy"
                | "DeleteUserPolicy"
                | "ListAttachedUserPolicies"
                | "GetLoginProfile"
                | "DeleteLoginProfile",
                _,
            ) => Sid::IamUsers,
            ("iam", "AttachUserPolicy" | "DetachUserPolicy", _) => Sid::IamQuarantinePolicy,
            ("iam", "GetRolePolicy" | "PutRolePolicy" | "DeleteRolePolicy" | "ListRoleTags", _) => {
                Sid::IamRoles
            }
            ("iam", "ListUserTags", _) => Sid::IamUsers,
            ("iam", "GetInstanceProfile", _) => Sid::IamInstanceProfiles,
            ("iam", "PassRole", _) => Sid::IamPassRoleToEc2,
            (
                "secretsmanager",
                "CreateSecret" | "DescribeSecret" | "DeleteSecret" | "TagResource",
                _,
            ) => Sid::SecretsManagerRotatedKeys,
            ("kms", "GenerateDataKey" | "Decrypt", Origin::FrontDoor(FrontDoor::S3Journal)) => {
                Sid::KmsViaS3
            }
            ("kms", "GenerateDataKey" | "Decrypt", Origin::Implied(row)) => {
                match row.carried_by.split_once(':').map(|(s, _)| s) {
                    Some("s3") => Sid::KmsViaS3,
                    Some("secretsmanager") => Sid::KmsViaSecretsManager,
                    Some("sns") => Sid::KmsViaSns,
                    _ => return None,
                }
            }
            ("s3", "ListBucketVersions", _) => Sid::S3EvidenceVersions,
            ("s3", "ListBucket", Origin::FrontDoor(FrontDoor::S3Journal)) => Sid::S3JournalList,
            ("s3", "PutObject" | "GetObject", Origin::FrontDoor(FrontDoor::S3Journal)) => {
                Sid::S3JournalRecords
            }
            ("s3", "PutObject" | "GetObject" | "GetObjectVersion", Origin::Call) => {
                Sid::S3EvidenceObjects
            }
            ("sns", "Publish" | "GetTopicAttributes", _) => Sid::SnsNotify,
            ("detective", "ListGraphs", _) => Sid::ReadsAnyResource,
            (
                "detective",
                "StartInvestigation" | "GetInvestigation" | "ListIndicators" | "ListInvestigations",
                _,
            ) => Sid::DetectiveInvestigations,
            ("guardduty", "ListDetectors", _) => Sid::ReadsAnyResource,
            ("guardduty", "GetFindings" | "ListFindings", _) => Sid::GuardDutyFindings,
            ("kms", "Sign", Origin::FrontDoor(FrontDoor::EvidenceSigning)) => Sid::KmsSignEvidence,
            ("sts", "GetCallerIdentity", _) => Sid::ReadsAnyResource,
            ("sts", "AssumeRole", _) => Sid::StsAssumeResponderRole,
            ("ssm", "GetParameter", _) => Sid::SsmPauseParameter,
            ("ssm", "SendCommand", _) => Sid::SsmRunCommand,
            ("ssm", "GetCommandInvocation" | "ListCommands" | "CancelCommand", _) => {
                Sid::SsmCommandInvocations
            }
            ("s3", "GetBucketPublicAccessBlock" | "PutBucketPublicAccessBlock", _) => {
                Sid::S3BucketPublicAccessBlock
            }
            _ => return None,
        };
        Some(sid)
    }

    /// The statement's resources and conditions.
    fn body(self, opts: &PolicyOptions, needs: &Needs) -> (Vec<String>, Conditions) {
        let mut conditions = Conditions::new();
        let mut condition = |op: &str, key: &str, values: Vec<String>| {
            conditions
                .entry(op.to_string())
                .or_default()
                .insert(key.to_string(), values);
        };
        let ec2 = |rest: &str| opts.arn("ec2", rest);
        let resources = match self {
            // Service Authorization Reference: the Describe*/List* reads, ListGraphs,
            // ListDetectors and GetCallerIdentity list no resource types, so they
            // take `*` (list_amazonec2, list_amazonec2autoscaling,
            // list_elasticloadbalancingv2, list_amazondetective, list_amazonguardduty,
            // list_awssecuritytokenservice).
            Sid::ReadsAnyResource => vec!["*".to_string()],
            // list_amazonec2: ModifyInstanceAttribute (instance*), ModifyNetworkInterfaceAttribute
            // (network-interface*, and the instance, security groups and VPC it touches),
            // CreateSecurityGroup (security-group*, vpc*), Authorize/RevokeSecurityGroup*
            // (security-group*, security-group-rule), Associate/DisassociateIamInstanceProfile
            // and GetConsoleOutput (instance*); ModifyInstanceAttribute's block-device
            // change names the volumes.
            Sid::Ec2Contain => [
                "instance/*",
                "network-interface/*",
                "security-group/*",
                "security-group-rule/*",
                "volume/*",
                "vpc/*",
            ]
            .iter()
            .map(|r| ec2(r))
            .collect(),
            // list_amazonec2: CreateSnapshot (snapshot*, volume*), DeleteSnapshot (snapshot*);
            // snapshot ARNs have no account field.
            Sid::Ec2Snapshots => vec![ec2("volume/*"), opts.snapshot_arn()],
            // list_amazonec2: CreateTags/DeleteTags on the tagged resources, with
            // aws:TagKeys: only the keys the playbooks' tag steps set (undo restores
            // or removes exactly those).
            Sid::Ec2TagInstances => {
                condition(
                    "ForAllValues:StringEquals",
                    "aws:TagKeys",
                    needs.tag_keys.iter().cloned().collect(),
                );
                vec![
                    ec2("instance/*"),
                    ec2("network-interface/*"),
                    ec2("volume/*"),
                ]
            }
            // EC2 user guide, "Grant permission to tag resources during creation":
            // ec2:CreateTags limited by ec2:CreateAction to the creating calls.
            Sid::Ec2TagOnCreate => {
                condition(
                    "StringEquals",
                    "ec2:CreateAction",
                    needs.create_actions.iter().cloned().collect(),
                );
                vec![ec2("security-group/*"), opts.snapshot_arn()]
            }
            // list_amazonec2autoscaling: autoScalingGroup* for the four mutations.
            Sid::AutoScalingGroups => {
                vec![opts.arn("autoscaling", "autoScalingGroup:*:autoScalingGroupName/*")]
            }
            // list_elasticloadbalancingv2: RegisterTargets/DeregisterTargets on targetgroup*.
            Sid::LoadBalancingTargets => vec![opts.arn("elasticloadbalancing", "targetgroup/*/*")],
            // list_awsidentityandaccessmanagementiam: user* for key, inline-policy and
            // login-profile calls; IAM ARNs have no region.
            Sid::IamUsers => vec![opts.iam_arn("user/*")],
            // AttachUserPolicy/DetachUserPolicy: user*, with iam:PolicyARN so only
            // cordon's managed deny policy can be attached or detached.
            Sid::IamQuarantinePolicy => {
                let mut names: Vec<&str> = needs
                    .quarantine_policies
                    .iter()
                    .map(String::as_str)
                    .collect();
                if names.is_empty() {
                    names.push(QUARANTINE_POLICY_NAME);
                }
                let arns: Vec<String> = names
                    .into_iter()
                    .map(|name| opts.quarantine_policy_arn_named(name))
                    .collect();
                let operator = if arns.iter().any(|arn| arn.contains('*')) {
                    "ArnLike"
                } else {
                    "ArnEquals"
                };
                condition(operator, "iam:PolicyARN", arns);
                vec![opts.iam_arn("user/*")]
            }
            // Get/Put/DeleteRolePolicy: role*.
            Sid::IamRoles => vec![opts.iam_arn("role/*")],
            // GetInstanceProfile: instance-profile*.
            Sid::IamInstanceProfiles => vec![opts.iam_arn("instance-profile/*")],
            // PassRole: role*, with iam:PassedToService so the role can only go to EC2
            // (EC2 user guide, "Grant permissions to attach an IAM role to an instance").
            Sid::IamPassRoleToEc2 => {
                condition("StringEquals", "iam:PassedToService", opts.ec2_principals());
                vec![opts.iam_arn("role/*")]
            }
            // list_awssecretsmanager: Secret* (arn:...:secret:${SecretId}); the secret's
            // name starts with the step's prefix, its ARN adds a random suffix.
            Sid::SecretsManagerRotatedKeys => needs
                .secret_prefixes
                .iter()
                .map(|p| opts.arn("secretsmanager", &format!("secret:{p}*")))
                .collect(),
            // list_awskeymanagementservice: key* with kms:ViaService (the call reaches KMS
            // through that service only) and, for S3, kms:EncryptionContext:aws:s3:arn
            // (S3 uses the object ARN, or the bucket ARN with an S3 Bucket Key).
            Sid::KmsViaS3 => {
                condition("StringLike", "kms:ViaService", vec![opts.via_service("s3")]);
                let mut arns = BTreeSet::new();
                for (bucket, prefix) in &needs.evidence {
                    arns.insert(opts.s3_arn(bucket));
                    arns.insert(opts.s3_arn(&format!("{bucket}/{prefix}*")));
                }
                condition(
                    "StringLike",
                    "kms:EncryptionContext:aws:s3:arn",
                    arns.into_iter().collect(),
                );
                vec![opts.arn("kms", "key/*")]
            }
            // list_awskeymanagementservice: Sign on key*, with kms:SigningAlgorithm and
            // kms:MessageType. An alias is not a resource IAM matches: it is
            // checked with kms:RequestAlias on the account's keys instead.
            Sid::KmsSignEvidence => {
                condition(
                    "StringEquals",
                    "kms:SigningAlgorithm",
                    vec!["ECDSA_SHA_256".to_string()],
                );
                condition(
                    "StringEquals",
                    "kms:MessageType",
                    vec!["DIGEST".to_string()],
                );
                let key = opts.evidence_signing_key.as_deref().unwrap_or_default();
                if key.starts_with("arn:") && key.contains(":key/") {
                    vec![key.to_string()]
                } else if let Some(alias) = key
                    .strip_prefix("alias/")
                    .or_else(|| key.split_once(":alias/").map(|(_, name)| name))
                {
                    condition(
                        "StringEquals",
                        "kms:RequestAlias",
                        vec![format!("alias/{alias}")],
                    );
                    vec![opts.arn("kms", "key/*")]
                } else {
                    vec![opts.arn("kms", &format!("key/{key}"))]
                }
            }
            Sid::KmsViaSecretsManager => {
                condition(
                    "StringLike",
                    "kms:ViaService",
                    vec![opts.via_service("secretsmanager")],
                );
                vec![opts.arn("kms", "key/*")]
            }
            Sid::KmsViaSns => {
                condition(
                    "StringLike",
                    "kms:ViaService",
                    vec![opts.via_service("sns")],
                );
                vec![opts.arn("kms", "key/*")]
            }
            // list_amazons3: Put/GetObject, GetObjectVersion on object* (arn:...:s3:::bucket/key).
            Sid::S3EvidenceObjects => needs
                .evidence
                .iter()
                .map(|(bucket, prefix)| opts.s3_arn(&format!("{bucket}/{prefix}*")))
                .collect(),
            // ListBucketVersions: bucket*, with s3:prefix.
            Sid::S3EvidenceVersions => {
                condition(
                    "StringLike",
                    "s3:prefix",
                    needs
                        .evidence
                        .iter()
                        .map(|(_, prefix)| format!("{prefix}*"))
                        .collect::<BTreeSet<_>>()
                        .into_iter()
                        .collect(),
                );
                needs
                    .evidence
                    .iter()
                    .map(|(bucket, _)| opts.s3_arn(bucket))
                    .collect::<BTreeSet<_>>()
                    .into_iter()
                    .collect()
            }
            // ListBucket: bucket*, with s3:prefix (the journal lists under `cases/`).
            Sid::S3JournalList => {
                condition(
                    "StringLike",
                    "s3:prefix",
                    vec![format!("{RUN_EVIDENCE_PREFIX}*")],
                );
                vec![opts.s3_arn(opts.evidence_bucket())]
            }
            // Journal records: `<prefix><case-id>/journal/<seq>.json`.
            Sid::S3JournalRecords => vec![opts.s3_arn(&format!(
                "{}/{RUN_EVIDENCE_PREFIX}*/journal/*",
                opts.evidence_bucket()
            ))],
            // list_amazonsns: Publish and GetTopicAttributes on topic*.
            Sid::SnsNotify => {
                let mut topics = needs.topics.clone();
                if needs.topic_unnamed {
                    match &opts.notify_topic {
                        Some(topic) => {
                            topics.insert(topic.clone());
                        }
                        None => {
                            topics.insert(opts.arn("sns", "*"));
                        }
                    }
                }
                topics.into_iter().collect()
            }
            // list_amazondetective: the investigation calls take the graph (Graph*).
            Sid::DetectiveInvestigations => vec![opts.arn("detective", "graph:*")],
            // list_amazonguardduty: GetFindings/ListFindings on detector*.
            Sid::GuardDutyFindings => vec![opts.arn("guardduty", "detector/*")],
            // list_awssecuritytokenservice: AssumeRole (role*); only the
            // responder role, in any account (the member accounts' trust
            // policies decide who may assume it).
            Sid::StsAssumeResponderRole => vec![format!(
                "arn:{}:iam::*:role/{RESPONDER_ROLE_NAME}",
                opts.partition
            )],
            // list_awssystemsmanager: GetParameter (parameter*).
            Sid::SsmPauseParameter => vec![opts.arn("ssm", "parameter/*")],
            // list_awssystemsmanager: SendCommand (document*, instance); the
            // document is AWS's own, whose ARN has no account.
            Sid::SsmRunCommand => vec![
                format!(
                    "arn:{}:ssm:{}::document/AWS-RunShellScript",
                    opts.partition, opts.region
                ),
                ec2("instance/*"),
            ],
            // list_awssystemsmanager: GetCommandInvocation, ListCommands and
            // CancelCommand list no resource type.
            Sid::SsmCommandInvocations => vec!["*".to_string()],
            // list_amazons3: Get/PutBucketPublicAccessBlock (bucket*): any bucket
            // a Config rule names.
            Sid::S3BucketPublicAccessBlock => vec![opts.s3_arn("*")],
        };
        let mut resources = resources;
        resources.sort();
        resources.dedup();
        (resources, conditions)
    }
}

fn no_wildcards(
    playbook: &Playbook,
    step: &str,
    what: &'static str,
    value: &str,
) -> Result<(), PolicyError> {
    if value.contains(['*', '?']) {
        return Err(PolicyError::StepValue {
            playbook: playbook.name.clone(),
            step: step.to_string(),
            what,
            value: value.to_string(),
            why: "a wildcard would widen the grant",
        });
    }
    Ok(())
}

/// Records what one step's parameters put into ARNs and conditions.
fn note_step(
    playbook: &Playbook,
    step: &str,
    action: &Action,
    opts: &PolicyOptions,
    needs: &mut Needs,
) -> Result<(), PolicyError> {
    let run_bucket = opts.evidence_bucket().to_string();
    match action {
        Action::TagResource(p) => needs.tag_keys.extend(p.tags.keys().cloned()),
        Action::QuarantineUser(p) => {
            if !IdKind::PolicyName.matches(&p.policy_name) {
                return Err(PolicyError::StepValue {
                    playbook: playbook.name.clone(),
                    step: step.to_string(),
                    what: "policy-name",
                    value: p.policy_name.clone(),
                    why: "not an IAM policy name (1 to 128 of A-Z a-z 0-9 + = , . @ _ -)",
                });
            }
            needs.quarantine_policies.insert(p.policy_name.clone());
        }
        Action::RotateAccessKey(p) => {
            no_wildcards(playbook, step, "secret-name-prefix", &p.secret_name_prefix)?;
            needs.secret_prefixes.insert(p.secret_name_prefix.clone());
        }
        Action::StoreEvidence(p) => {
            no_wildcards(playbook, step, "prefix", &p.prefix)?;
            let bucket = match &p.bucket {
                Some(bucket) if !is_bucket_name(bucket) => {
                    return Err(PolicyError::StepValue {
                        playbook: playbook.name.clone(),
                        step: step.to_string(),
                        what: "bucket",
                        value: bucket.clone(),
                        why: "not a valid S3 bucket name",
                    });
                }
                Some(bucket) => bucket.clone(),
                None => run_bucket,
            };
            needs.evidence.insert((bucket, p.prefix.clone()));
        }
        Action::Notify(p) => match &p.topic_arn {
            Some(topic) if !is_topic_arn(topic) => {
                return Err(PolicyError::StepValue {
                    playbook: playbook.name.clone(),
                    step: step.to_string(),
                    what: "topic-arn",
                    value: topic.clone(),
                    why: "not an SNS topic ARN",
                });
            }
            Some(topic) => {
                needs.topics.insert(topic.clone());
            }
            None => needs.topic_unnamed = true,
        },
        _ => {}
    }
    if matches!(
        action.kind(),
        ActionKind::CaptureInstanceMetadata
            | ActionKind::CaptureConsoleOutput
            | ActionKind::CaptureMemory
            | ActionKind::EnrichWithDetective
    ) {
        needs.evidence.insert((
            opts.evidence_bucket().to_string(),
            RUN_EVIDENCE_PREFIX.to_string(),
        ));
    }
    Ok(())
}

/// Collects permissions into statements.
#[derive(Debug, Default)]
struct Builder {
    needs: BTreeMap<(Sid, &'static str), BTreeSet<Need>>,
}

impl Builder {
    fn add(
        &mut self,
        permission: &'static str,
        origin: Origin<'_>,
        need: Need,
    ) -> Result<(), PolicyError> {
        let sid = Sid::of(permission, origin)
            .ok_or_else(|| PolicyError::Unscoped(permission.to_string()))?;
        self.needs
            .entry((sid, permission))
            .or_default()
            .insert(need);
        Ok(())
    }

    fn finish(self, opts: &PolicyOptions, needs: &Needs) -> RolePolicy {
        let mut actions: BTreeMap<Sid, BTreeSet<&'static str>> = BTreeMap::new();
        for (sid, permission) in self.needs.keys() {
            actions.entry(*sid).or_default().insert(permission);
        }
        let statements = actions
            .into_iter()
            .map(|(sid, actions)| {
                let (resource, condition) = sid.body(opts, needs);
                Statement {
                    sid: sid.name(),
                    effect: Effect::Allow,
                    action: actions.into_iter().map(str::to_string).collect(),
                    resource,
                    condition,
                }
            })
            .collect();
        RolePolicy {
            document: PolicyDocument::new(statements),
            needs: self
                .needs
                .into_iter()
                .map(|((sid, permission), why)| ((sid.name(), permission.to_string()), why))
                .collect(),
        }
    }
}

/// What one step of `playbook` needs: the IAM actions of its calls (narrowed
/// by its parameters and by whether the playbook can meet instance findings)
/// and the implied permissions those calls carry.
pub fn step_needs(
    playbook: &Playbook,
    step: &Step,
) -> (Vec<&'static str>, Vec<&'static ImpliedPermission>) {
    let types = &playbook.matcher.resource_types;
    let instance_findings = types.is_empty() || types.iter().any(|t| t == "Instance");
    (
        step.action.permissions(instance_findings),
        step.action.implied_permissions(),
    )
}

/// The policy cordon's role needs to run `playbooks` (every step, its undo and
/// verification, with the step's parameters) plus the front doors' own calls.
pub fn role_policy(
    playbooks: &[Playbook],
    opts: &PolicyOptions,
) -> Result<RolePolicy, PolicyError> {
    let mut needs = Needs::default();
    let mut builder = Builder::default();
    for playbook in playbooks {
        for step in &playbook.steps {
            let action = &step.action;
            note_step(playbook, &step.id, action, opts, &mut needs)?;
            let (calls, implied) = step_needs(playbook, step);
            for permission in calls {
                builder.add(
                    permission,
                    Origin::Call,
                    Need::Step {
                        playbook: playbook.name.clone(),
                        step: step.id.clone(),
                        action: action.kind(),
                    },
                )?;
            }
            for row in implied {
                if row.permission == "ec2:CreateTags"
                    && let Some((_, call)) = row.carried_by.split_once(':')
                {
                    needs.create_actions.insert(call.to_string());
                }
                builder.add(
                    row.permission,
                    Origin::Implied(row),
                    Need::Implied {
                        playbook: playbook.name.clone(),
                        step: step.id.clone(),
                        carried_by: row.carried_by,
                        reason: row.reason,
                    },
                )?;
            }
        }
    }
    // The S3 journal lives in the run's bucket, under the run's prefix.
    needs.evidence.insert((
        opts.evidence_bucket().to_string(),
        RUN_EVIDENCE_PREFIX.to_string(),
    ));
    for row in FRONT_DOOR_PERMISSIONS {
        if row.door == FrontDoor::EvidenceSigning && opts.evidence_signing_key.is_none() {
            continue;
        }
        builder.add(
            row.permission,
            Origin::FrontDoor(row.door),
            Need::FrontDoor {
                door: row.door,
                reason: row.reason,
            },
        )?;
    }
    Ok(builder.finish(opts, &needs))
}

/// Every permission any cordon action (with any parameters) or front door can
/// need: the ceiling the permissions boundary allows.
pub fn envelope() -> BTreeSet<&'static str> {
    use strum::IntoEnumIterator;
    ActionKind::iter()
        .flat_map(|kind| {
            kind.permissions()
                .iter()
                .copied()
                .chain(kind.implied_permissions().map(|row| row.permission))
        })
        .chain(FRONT_DOOR_PERMISSIONS.iter().map(|row| row.permission))
        .collect()
}

/// The permissions boundary for cordon's role (see the README, "Permissions").
///
/// It allows at most what some cordon action or front door can need
/// ([`envelope`]), whatever policies are later attached to the role, and
/// denies acting on cordon's own IAM identities and policies under
/// [`CORDON_IAM_PATH`]: cordon may put a session-revocation policy on any
/// compromised role, but never on its own role, and may pass roles to EC2,
/// but never its own.
pub fn boundary(opts: &PolicyOptions) -> PolicyDocument {
    let mut by_service: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for permission in envelope() {
        if let Some((service, _)) = permission.split_once(':') {
            by_service.entry(service).or_default().insert(permission);
        }
    }
    let mut statements: Vec<Statement> = by_service
        .into_iter()
        .map(|(service, actions)| Statement {
            sid: format!("Ceiling{}", service_title(service)),
            effect: Effect::Allow,
            action: actions.into_iter().map(str::to_string).collect(),
            resource: vec!["*".to_string()],
            condition: Conditions::new(),
        })
        .collect();
    let own_roles = opts.iam_arn(&format!("role{CORDON_IAM_PATH}*"));
    statements.push(Statement {
        sid: "DenyActingOnCordonRoles".to_string(),
        effect: Effect::Deny,
        action: ["iam:DeleteRolePolicy", "iam:PassRole", "iam:PutRolePolicy"]
            .iter()
            .map(|a| a.to_string())
            .collect(),
        resource: vec![own_roles],
        condition: Conditions::new(),
    });
    PolicyDocument::new(statements)
}

fn service_title(service: &str) -> String {
    match service {
        "ec2" => "Ec2".to_string(),
        "iam" => "Iam".to_string(),
        "kms" => "Kms".to_string(),
        "s3" => "S3".to_string(),
        "sns" => "Sns".to_string(),
        "sts" => "Sts".to_string(),
        "autoscaling" => "AutoScaling".to_string(),
        "elasticloadbalancing" => "ElasticLoadBalancing".to_string(),
        "secretsmanager" => "SecretsManager".to_string(),
        "guardduty" => "GuardDuty".to_string(),
        "detective" => "Detective".to_string(),
        other => other
            .split(|c: char| !c.is_ascii_alphanumeric())
            .map(|word| {
                let mut chars = word.chars();
                chars
                    .next()
                    .map(|c| c.to_ascii_uppercase().to_string() + chars.as_str())
                    .unwrap_or_default()
            })
            .collect(),
    }
}

/// The managed policy `quarantine-user` attaches (at
/// [`PolicyOptions::quarantine_policy_arn`]): an explicit deny of everything,
/// which beats any allow the user holds. A `Deny` of `*` is the one wildcard
/// action cordon ships, and it is never in a policy cordon itself holds.
pub fn quarantine_policy() -> PolicyDocument {
    PolicyDocument::new(vec![Statement {
        sid: QUARANTINE_POLICY_NAME.to_string(),
        effect: Effect::Deny,
        action: vec!["*".to_string()],
        resource: vec!["*".to_string()],
        condition: Conditions::new(),
    }])
}

#[cfg(test)]
mod tests {
    use strum::IntoEnumIterator;

    use super::*;
    use crate::action::IMPLIED_PERMISSIONS;

    #[test]
    fn every_permission_cordon_can_need_has_a_statement() {
        for kind in ActionKind::iter() {
            for permission in kind.permissions() {
                assert!(
                    Sid::of(permission, Origin::Call).is_some(),
                    "{kind}: {permission}"
                );
            }
        }
        for row in IMPLIED_PERMISSIONS {
            assert!(
                Sid::of(row.permission, Origin::Implied(row)).is_some(),
                "{row:?}"
            );
        }
        for row in FRONT_DOOR_PERMISSIONS {
            assert!(
                Sid::of(row.permission, Origin::FrontDoor(row.door)).is_some(),
                "{row:?}"
            );
        }
    }

    #[test]
    fn options_are_checked() {
        assert!(PolicyOptions::new("aws", "123456789012", "eu-west-1").is_ok());
        assert!(PolicyOptions::new("aws-us-gov", "*", "us-gov-west-1").is_ok());
        assert!(matches!(
            PolicyOptions::new("aws-eu", "*", "*"),
            Err(PolicyError::Partition(_))
        ));
        assert!(matches!(
            PolicyOptions::new("aws", "12345", "*"),
            Err(PolicyError::Account(_))
        ));
        assert!(matches!(
            PolicyOptions::new("aws", "*", "eu-west"),
            Err(PolicyError::Region(_))
        ));
        assert!(matches!(
            PolicyOptions::default().with_evidence_bucket(Some("Evidence")),
            Err(PolicyError::Bucket(_))
        ));
        assert!(matches!(
            PolicyOptions::default().with_notify_topic(Some("arn:aws:sns:eu-west-1:123:t")),
            Err(PolicyError::Topic(_))
        ));
        assert!(
            PolicyOptions::default()
                .with_notify_topic(Some("arn:aws:sns:eu-west-1:123456789012:responders"))
                .is_ok()
        );
    }

    #[test]
    fn arns_follow_each_service_shape() {
        let opts = PolicyOptions::new("aws", "123456789012", "eu-west-1").unwrap();
        assert_eq!(
            opts.arn("ec2", "instance/*"),
            "arn:aws:ec2:eu-west-1:123456789012:instance/*"
        );
        assert_eq!(opts.iam_arn("user/*"), "arn:aws:iam::123456789012:user/*");
        assert_eq!(opts.s3_arn("b/cases/*"), "arn:aws:s3:::b/cases/*");
        assert_eq!(opts.snapshot_arn(), "arn:aws:ec2:eu-west-1::snapshot/*");
        assert_eq!(opts.via_service("s3"), "s3.eu-west-1.amazonaws.com");
        assert_eq!(
            opts.quarantine_policy_arn(),
            "arn:aws:iam::123456789012:policy/cordon/CordonQuarantineDenyAll"
        );
    }

    #[test]
    fn quarantine_attaches_only_cordons_managed_policy() {
        let opts = PolicyOptions::new("aws", "123456789012", "*").unwrap();
        let playbook: Playbook = serde_json::from_value(serde_json::json!({
            "name": "p", "match": {}, "steps": [
                {"id": "quarantine", "action": "quarantine-user"},
                {"id": "other", "action": "quarantine-user", "with": {"policy-name": "CordonDenyAllOther"}}
            ]
        }))
        .unwrap();
        let role = role_policy(std::slice::from_ref(&playbook), &opts).unwrap();
        let attach = role
            .document
            .statements
            .iter()
            .find(|s| s.sid == "IamQuarantinePolicy")
            .unwrap();
        assert_eq!(
            attach.action,
            ["iam:AttachUserPolicy", "iam:DetachUserPolicy"]
        );
        assert_eq!(attach.resource, ["arn:aws:iam::123456789012:user/*"]);
        assert_eq!(
            attach.condition["ArnEquals"]["iam:PolicyARN"],
            [
                "arn:aws:iam::123456789012:policy/cordon/CordonDenyAllOther",
                "arn:aws:iam::123456789012:policy/cordon/CordonQuarantineDenyAll"
            ]
        );
        let actions = role.document.allowed_actions();
        assert!(actions.contains("iam:ListAttachedUserPolicies"));
        assert!(!actions.contains("iam:PutUserPolicy"), "{actions:?}");

        let mut bad = playbook;
        bad.steps[1].action = Action::QuarantineUser(crate::action::QuarantineUser {
            policy_name: "Deny*".to_string(),
        });
        let err = role_policy(&[bad], &opts).unwrap_err();
        assert!(err.to_string().contains("policy-name `Deny*`"), "{err}");
    }

    #[test]
    fn wildcards_in_step_values_are_refused() {
        let mut playbook: Playbook = serde_json::from_value(serde_json::json!({
            "name": "p", "match": {}, "steps": [
                {"id": "rotate", "action": "rotate-access-key", "with": {"secret-name-prefix": "cordon/*"}}
            ]
        }))
        .unwrap();
        let err =
            role_policy(std::slice::from_ref(&playbook), &PolicyOptions::default()).unwrap_err();
        assert!(err.to_string().contains("step `rotate`"), "{err}");
        playbook.steps[0].action = Action::RotateAccessKey(Default::default());
        assert!(role_policy(&[playbook], &PolicyOptions::default()).is_ok());
    }

    #[test]
    fn boundary_never_allows_a_wildcard_action_and_guards_cordons_own_roles() {
        let doc = boundary(&PolicyOptions::default());
        for statement in doc.statements.iter().filter(|s| s.effect == Effect::Allow) {
            assert!(
                statement.action.iter().all(|a| !a.contains('*')),
                "{statement:?}"
            );
        }
        assert_eq!(
            doc.allowed_actions(),
            envelope().into_iter().map(str::to_string).collect()
        );
        let deny = doc
            .statements
            .iter()
            .find(|s| s.effect == Effect::Deny)
            .unwrap();
        assert_eq!(deny.resource, ["arn:*:iam::*:role/cordon/*"]);
        assert!(deny.action.contains(&"iam:PutRolePolicy".to_string()));
    }
}
