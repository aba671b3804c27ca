//! Every AWS operation cordon calls, one row each: the only place an
//! operation's name, the IAM action it needs and the throttle bucket it draws
//! on are spelled.
//!
//! Handlers name a row ([`EC2_CREATE_TAGS`]) and hand it to the call path
//! ([`crate::client::AwsClients::call`]), which takes the rate-limit token
//! from the row's bucket, records the call under the row, and words errors
//! with the row's names. So the permissions an action needs can be proven
//! from the calls it makes (the recorder, [`crate::recorder`]), and the
//! throttle budgets cannot drift from the operations that spend them.
//!
//! Where one API operation needs different IAM actions depending on how it is
//! called (S3 `GetObject` of a specific version needs `s3:GetObjectVersion`),
//! it has one row per IAM action.

use crate::ratelimit::Bucket;

/// The AWS services cordon talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Service {
    Ec2,
    Iam,
    S3,
    Sts,
    AutoScaling,
    Elbv2,
    SecretsManager,
    Kms,
    Sns,
    GuardDuty,
    Detective,
    Ssm,
    /// Step Functions: answering an approval wait (`cordon approve --task-token`).
    StepFunctions,
}

impl Service {
    /// Every service, for tests that walk them all.
    pub const ALL: [Service; 13] = [
        Service::Ec2,
        Service::Iam,
        Service::S3,
        Service::Sts,
        Service::AutoScaling,
        Service::Elbv2,
        Service::SecretsManager,
        Service::Kms,
        Service::Sns,
        Service::GuardDuty,
        Service::Detective,
        Service::Ssm,
        Service::StepFunctions,
    ];

    /// The prefix of the service's IAM actions (`ec2` in `ec2:CreateTags`).
    pub const fn iam_prefix(self) -> &'static str {
        match self {
            Service::Ec2 => "ec2",
            Service::Iam => "iam",
            Service::S3 => "s3",
            Service::Sts => "sts",
            Service::AutoScaling => "autoscaling",
            Service::Elbv2 => "elasticloadbalancing",
            Service::SecretsManager => "secretsmanager",
            Service::Kms => "kms",
            Service::Sns => "sns",
            Service::GuardDuty => "guardduty",
            Service::Detective => "detective",
            Service::Ssm => "ssm",
            Service::StepFunctions => "states",
        }
    }

    /// The service as [`crate::client::CallCounter`] keys it (the SDK's
    /// service name without spaces), so recorded operations can be matched
    /// with what reached the wire.
    pub const fn sdk_name(self) -> &'static str {
        match self {
            Service::Ec2 => "EC2",
            Service::Iam => "IAM",
            Service::S3 => "S3",
            Service::Sts => "STS",
            Service::AutoScaling => "AutoScaling",
            Service::Elbv2 => "ElasticLoadBalancingv2",
            Service::SecretsManager => "SecretsManager",
            Service::Kms => "KMS",
            Service::Sns => "SNS",
            Service::GuardDuty => "GuardDuty",
            Service::Detective => "Detective",
            Service::Ssm => "SSM",
            Service::StepFunctions => "SFN",
        }
    }
}

/// One AWS operation as cordon calls it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Op {
    /// The service the operation belongs to.
    pub service: Service,
    /// The API operation name, as AWS documents it (`ModifyNetworkInterfaceAttribute`).
    pub name: &'static str,
    /// The IAM action the caller needs for this call.
    pub iam_action: &'static str,
    /// The token bucket the call draws on.
    pub bucket: Bucket,
    /// Whether the call may change something (a dry run makes none).
    pub mutating: bool,
    /// Permissions AWS checks on the caller's behalf while serving the call,
    /// which no call of cordon's shows (SSE-KMS, `iam:PassRole`).
    pub implied: &'static [Implied],
    /// How long one attempt may take before it is abandoned.
    pub class: OpClass,
    /// Sent at most once per call: the operation creates something new each
    /// time it takes effect and has no idempotency token, so an attempt that
    /// timed out may have taken effect and must not be re-sent blindly. The
    /// SDK does not retry it; the caller reads first (finds what the attempt
    /// may have created) and only then sends it again.
    pub send_once: bool,
}

/// The time budgets of a call, by what it carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum OpClass {
    /// A control-plane call answered in well under a second: an attempt
    /// that takes seconds is stuck, so it is abandoned and retried within
    /// the operation's budget ([`crate::client::CONTROL_PLANE_ATTEMPT_TIMEOUT`]).
    ControlPlane,
    /// An S3 object body (evidence upload or download), which can be large
    /// ([`crate::client::TRANSFER_ATTEMPT_TIMEOUT`]).
    Transfer,
}

/// A permission a call needs besides its own IAM action.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Implied {
    /// The IAM action (`kms:GenerateDataKey`).
    pub iam_action: &'static str,
    /// Why the call needs it, for people reading a policy.
    pub reason: &'static str,
}

/// SSE-KMS: S3 asks KMS for a data key to encrypt each object written.
const SSE_KMS_WRITE: Implied = Implied {
    iam_action: "kms:GenerateDataKey",
    reason: "S3 encrypts the object with SSE-KMS under the bucket's key",
};
/// SSE-KMS: S3 asks KMS to decrypt each object read.
const SSE_KMS_READ: Implied = Implied {
    iam_action: "kms:Decrypt",
    reason: "S3 decrypts the SSE-KMS object with the bucket's key",
};
/// Tags given at creation (`TagSpecifications`) are authorized as `CreateTags`.
const EC2_TAG_ON_CREATE: Implied = Implied {
    iam_action: "ec2:CreateTags",
    reason: "the resource is tagged as it is created",
};
/// Associating a profile passes its role to EC2.
const PASS_ROLE: Implied = Implied {
    iam_action: "iam:PassRole",
    reason: "associating the instance profile passes its role to EC2",
};
/// Tags given at creation are authorized as `TagResource`.
const SECRET_TAG_ON_CREATE: Implied = Implied {
    iam_action: "secretsmanager:TagResource",
    reason: "the secret is tagged as it is created",
};
/// A secret under a customer key needs that key to encrypt it.
const SECRET_KMS_ENCRYPT: Implied = Implied {
    iam_action: "kms:GenerateDataKey",
    reason: "Secrets Manager encrypts the secret with the configured KMS key",
};

impl Op {
    const fn new(
        service: Service,
        name: &'static str,
        iam_action: &'static str,
        bucket: Bucket,
        mutating: bool,
    ) -> Op {
        Op {
            service,
            name,
            iam_action,
            bucket,
            mutating,
            implied: &[],
            class: OpClass::ControlPlane,
            send_once: false,
        }
    }

    /// An EC2 read (`Describe*`, `Get*`): the non-mutating bucket.
    pub const fn ec2_read(name: &'static str, iam_action: &'static str) -> Op {
        Op::new(
            Service::Ec2,
            name,
            iam_action,
            Bucket::Ec2NonMutating,
            false,
        )
    }

    /// An EC2 change, drawing on `bucket` (see AWS-NOTES, "Throttling").
    pub const fn ec2_write(name: &'static str, iam_action: &'static str, bucket: Bucket) -> Op {
        Op::new(Service::Ec2, name, iam_action, bucket, true)
    }

    /// A read of another service, on that service's own bucket.
    pub const fn read(service: Service, name: &'static str, iam_action: &'static str) -> Op {
        Op::new(service, name, iam_action, Bucket::Service(service), false)
    }

    /// A change in another service, on that service's own bucket.
    pub const fn write(service: Service, name: &'static str, iam_action: &'static str) -> Op {
        Op::new(service, name, iam_action, Bucket::Service(service), true)
    }

    /// The same operation, needing `implied` permissions besides its own.
    pub const fn implies(mut self, implied: &'static [Implied]) -> Op {
        self.implied = implied;
        self
    }

    /// The same operation, carrying an S3 object body (see [`OpClass::Transfer`]).
    pub const fn transfer(mut self) -> Op {
        self.class = OpClass::Transfer;
        self
    }

    /// The same operation, never re-sent by the SDK (see [`Op::send_once`]).
    pub const fn send_once(mut self) -> Op {
        self.send_once = true;
        self
    }

    /// The IAM actions to grant for this call: its own, then the implied ones.
    pub fn iam_actions(&self) -> impl Iterator<Item = &'static str> + '_ {
        std::iter::once(self.iam_action).chain(self.implied.iter().map(|i| i.iam_action))
    }

    /// `Service.Operation`, as [`crate::client::CallCounter`] keys calls.
    pub fn counter_key(&self) -> String {
        format!("{}.{}", self.service.sdk_name(), self.name)
    }
}

impl std::fmt::Display for Op {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name)
    }
}

/// Declares the rows and [`ALL`], so no row can be left out of the list
/// the tests (and the policy generator) walk.
macro_rules! ops {
    ($( $(#[$doc:meta])* $name:ident = $op:expr; )*) => {
        $( $(#[$doc])* pub const $name: Op = $op; )*

        /// Every row of the table.
        pub const ALL: &[&Op] = &[ $( &$name, )* ];
    };
}

use Bucket::{Ec2CreateTags, Ec2Mutating, Ec2Operation, Ec2ResourceIntensive};
use Service::{
    AutoScaling, Detective, Elbv2, GuardDuty, Iam, Kms, S3, SecretsManager, Sns, Ssm,
    StepFunctions, Sts,
};

ops! {
    // ---- EC2 reads
    EC2_DESCRIBE_INSTANCES = Op::ec2_read("DescribeInstances", "ec2:DescribeInstances");
    EC2_DESCRIBE_INSTANCE_ATTRIBUTE =
        Op::ec2_read("DescribeInstanceAttribute", "ec2:DescribeInstanceAttribute");
    EC2_DESCRIBE_NETWORK_INTERFACES =
        Op::ec2_read("DescribeNetworkInterfaces", "ec2:DescribeNetworkInterfaces");
    EC2_DESCRIBE_SECURITY_GROUPS =
        Op::ec2_read("DescribeSecurityGroups", "ec2:DescribeSecurityGroups");
    EC2_DESCRIBE_TAGS = Op::ec2_read("DescribeTags", "ec2:DescribeTags");
    EC2_DESCRIBE_SNAPSHOTS = Op::ec2_read("DescribeSnapshots", "ec2:DescribeSnapshots");
    EC2_DESCRIBE_VOLUMES = Op::ec2_read("DescribeVolumes", "ec2:DescribeVolumes");
    EC2_DESCRIBE_IAM_INSTANCE_PROFILE_ASSOCIATIONS = Op::ec2_read(
        "DescribeIamInstanceProfileAssociations",
        "ec2:DescribeIamInstanceProfileAssociations",
    );
    EC2_GET_CONSOLE_OUTPUT = Op::ec2_read("GetConsoleOutput", "ec2:GetConsoleOutput");
    EC2_DESCRIBE_SNAPSHOT_ATTRIBUTE =
        Op::ec2_read("DescribeSnapshotAttribute", "ec2:DescribeSnapshotAttribute");

    // ---- EC2 changes, each on the bucket AWS-NOTES gives it
    EC2_CREATE_TAGS = Op::ec2_write("CreateTags", "ec2:CreateTags", Ec2CreateTags);
    EC2_DELETE_TAGS = Op::ec2_write("DeleteTags", "ec2:DeleteTags", Ec2Mutating);
    EC2_MODIFY_INSTANCE_ATTRIBUTE =
        Op::ec2_write("ModifyInstanceAttribute", "ec2:ModifyInstanceAttribute", Ec2Mutating);
    /// A second group of the same name is refused (`InvalidGroup.Duplicate`),
    /// but a timed-out attempt is still not re-sent blindly: the caller looks
    /// the group up by name and VPC first.
    EC2_CREATE_SECURITY_GROUP =
        Op::ec2_write("CreateSecurityGroup", "ec2:CreateSecurityGroup", Ec2Mutating)
            .implies(&[EC2_TAG_ON_CREATE])
            .send_once();
    EC2_REVOKE_SECURITY_GROUP_EGRESS =
        Op::ec2_write("RevokeSecurityGroupEgress", "ec2:RevokeSecurityGroupEgress", Ec2Mutating);
    EC2_AUTHORIZE_SECURITY_GROUP_EGRESS = Op::ec2_write(
        "AuthorizeSecurityGroupEgress",
        "ec2:AuthorizeSecurityGroupEgress",
        Ec2Mutating,
    );
    EC2_REVOKE_SECURITY_GROUP_INGRESS = Op::ec2_write(
        "RevokeSecurityGroupIngress",
        "ec2:RevokeSecurityGroupIngress",
        Ec2ResourceIntensive,
    );
    EC2_AUTHORIZE_SECURITY_GROUP_INGRESS = Op::ec2_write(
        "AuthorizeSecurityGroupIngress",
        "ec2:AuthorizeSecurityGroupIngress",
        Ec2ResourceIntensive,
    );
    EC2_MODIFY_NETWORK_INTERFACE_ATTRIBUTE = Op::ec2_write(
        "ModifyNetworkInterfaceAttribute",
        "ec2:ModifyNetworkInterfaceAttribute",
        Ec2Operation("ModifyNetworkInterfaceAttribute"),
    );
    /// Each call takes one more snapshot: the caller finds an attempt's
    /// snapshot by its case and step tags before sending again.
    EC2_CREATE_SNAPSHOT =
        Op::ec2_write("CreateSnapshot", "ec2:CreateSnapshot", Ec2Operation("CreateSnapshot"))
            .implies(&[EC2_TAG_ON_CREATE])
            .send_once();
    EC2_DELETE_SNAPSHOT = Op::ec2_write("DeleteSnapshot", "ec2:DeleteSnapshot", Ec2Mutating);
    EC2_MODIFY_SNAPSHOT_ATTRIBUTE =
        Op::ec2_write("ModifySnapshotAttribute", "ec2:ModifySnapshotAttribute", Ec2Mutating);
    EC2_MODIFY_INSTANCE_METADATA_OPTIONS = Op::ec2_write(
        "ModifyInstanceMetadataOptions",
        "ec2:ModifyInstanceMetadataOptions",
        Ec2Mutating,
    );
    EC2_ASSOCIATE_IAM_INSTANCE_PROFILE = Op::ec2_write(
        "AssociateIamInstanceProfile",
        "ec2:AssociateIamInstanceProfile",
        Ec2Operation("AssociateIamInstanceProfile"),
    )
    .implies(&[PASS_ROLE]);
    EC2_DISASSOCIATE_IAM_INSTANCE_PROFILE = Op::ec2_write(
        "DisassociateIamInstanceProfile",
        "ec2:DisassociateIamInstanceProfile",
        Ec2Operation("DisassociateIamInstanceProfile"),
    );

    // ---- IAM
    IAM_LIST_ACCESS_KEYS = Op::read(Iam, "ListAccessKeys", "iam:ListAccessKeys");
    IAM_GET_ACCESS_KEY_LAST_USED =
        Op::read(Iam, "GetAccessKeyLastUsed", "iam:GetAccessKeyLastUsed");
    IAM_UPDATE_ACCESS_KEY = Op::write(Iam, "UpdateAccessKey", "iam:UpdateAccessKey");
    /// Each call makes one more key (at most two per user): the caller lists
    /// the user's keys and finds the one not in the pre-state before sending again.
    IAM_CREATE_ACCESS_KEY = Op::write(Iam, "CreateAccessKey", "iam:CreateAccessKey").send_once();
    IAM_DELETE_ACCESS_KEY = Op::write(Iam, "DeleteAccessKey", "iam:DeleteAccessKey");
    IAM_GET_ROLE_POLICY = Op::read(Iam, "GetRolePolicy", "iam:GetRolePolicy");
    IAM_PUT_ROLE_POLICY = Op::write(Iam, "PutRolePolicy", "iam:PutRolePolicy");
    IAM_DELETE_ROLE_POLICY = Op::write(Iam, "DeleteRolePolicy", "iam:DeleteRolePolicy");
    IAM_GET_USER_POLICY = Op::read(Iam, "GetUserPolicy", "iam:GetUserPolicy");
    IAM_PUT_USER_POLICY = Op::write(Iam, "PutUserPolicy", "iam:PutUserPolicy");
    IAM_DELETE_USER_POLICY = Op::write(Iam, "DeleteUserPolicy", "iam:DeleteUserPolicy");
    IAM_LIST_ATTACHED_USER_POLICIES =
        Op::read(Iam, "ListAttachedUserPolicies", "iam:ListAttachedUserPolicies");
    IAM_ATTACH_USER_POLICY = Op::write(Iam, "AttachUserPolicy", "iam:AttachUserPolicy");
    IAM_DETACH_USER_POLICY = Op::write(Iam, "DetachUserPolicy", "iam:DetachUserPolicy");
    IAM_GET_INSTANCE_PROFILE = Op::read(Iam, "GetInstanceProfile", "iam:GetInstanceProfile");
    IAM_GET_LOGIN_PROFILE = Op::read(Iam, "GetLoginProfile", "iam:GetLoginProfile");
    IAM_DELETE_LOGIN_PROFILE = Op::write(Iam, "DeleteLoginProfile", "iam:DeleteLoginProfile");

    // ---- Secrets Manager
    SECRETSMANAGER_DESCRIBE_SECRET =
        Op::read(SecretsManager, "DescribeSecret", "secretsmanager:DescribeSecret");
    /// The KMS permission applies when the step names a customer key.
    SECRETSMANAGER_CREATE_SECRET =
        Op::write(SecretsManager, "CreateSecret", "secretsmanager:CreateSecret")
            .implies(&[SECRET_TAG_ON_CREATE, SECRET_KMS_ENCRYPT]);
    SECRETSMANAGER_DELETE_SECRET =
        Op::write(SecretsManager, "DeleteSecret", "secretsmanager:DeleteSecret");

    // ---- Auto Scaling
    AUTOSCALING_DESCRIBE_AUTO_SCALING_INSTANCES = Op::read(
        AutoScaling,
        "DescribeAutoScalingInstances",
        "autoscaling:DescribeAutoScalingInstances",
    );
    AUTOSCALING_DESCRIBE_AUTO_SCALING_GROUPS = Op::read(
        AutoScaling,
        "DescribeAutoScalingGroups",
        "autoscaling:DescribeAutoScalingGroups",
    );
    AUTOSCALING_UPDATE_AUTO_SCALING_GROUP = Op::write(
        AutoScaling,
        "UpdateAutoScalingGroup",
        "autoscaling:UpdateAutoScalingGroup",
    );
    AUTOSCALING_DETACH_INSTANCES =
        Op::write(AutoScaling, "DetachInstances", "autoscaling:DetachInstances");
    AUTOSCALING_ATTACH_INSTANCES =
        Op::write(AutoScaling, "AttachInstances", "autoscaling:AttachInstances");
    AUTOSCALING_SET_INSTANCE_PROTECTION =
        Op::write(AutoScaling, "SetInstanceProtection", "autoscaling:SetInstanceProtection");

    // ---- Elastic Load Balancing v2
    ELBV2_DESCRIBE_TARGET_GROUPS =
        Op::read(Elbv2, "DescribeTargetGroups", "elasticloadbalancing:DescribeTargetGroups");
    ELBV2_DESCRIBE_TARGET_HEALTH =
        Op::read(Elbv2, "DescribeTargetHealth", "elasticloadbalancing:DescribeTargetHealth");
    ELBV2_DEREGISTER_TARGETS =
        Op::write(Elbv2, "DeregisterTargets", "elasticloadbalancing:DeregisterTargets");
    ELBV2_REGISTER_TARGETS =
        Op::write(Elbv2, "RegisterTargets", "elasticloadbalancing:RegisterTargets");

    // ---- S3: evidence, the S3 journal, the evidence bucket standard
    S3_PUT_OBJECT = Op::write(S3, "PutObject", "s3:PutObject")
        .implies(&[SSE_KMS_WRITE])
        .transfer();
    /// The current version of an object.
    S3_GET_OBJECT = Op::read(S3, "GetObject", "s3:GetObject")
        .implies(&[SSE_KMS_READ])
        .transfer();
    /// A named version of an object: a different IAM action than the current one.
    S3_GET_OBJECT_VERSION = Op::read(S3, "GetObject", "s3:GetObjectVersion")
        .implies(&[SSE_KMS_READ])
        .transfer();
    /// `HeadObject` of the current version (an evidence object's retention).
    S3_HEAD_OBJECT = Op::read(S3, "HeadObject", "s3:GetObject");
    /// `HeadObject` of a named version.
    S3_HEAD_OBJECT_VERSION = Op::read(S3, "HeadObject", "s3:GetObjectVersion");
    S3_LIST_OBJECT_VERSIONS = Op::read(S3, "ListObjectVersions", "s3:ListBucketVersions");
    S3_LIST_OBJECTS_V2 = Op::read(S3, "ListObjectsV2", "s3:ListBucket");
    S3_HEAD_BUCKET = Op::read(S3, "HeadBucket", "s3:ListBucket");
    S3_CREATE_BUCKET = Op::write(S3, "CreateBucket", "s3:CreateBucket");
    S3_PUT_BUCKET_VERSIONING = Op::write(S3, "PutBucketVersioning", "s3:PutBucketVersioning");
    S3_GET_BUCKET_VERSIONING = Op::read(S3, "GetBucketVersioning", "s3:GetBucketVersioning");
    S3_PUT_BUCKET_ENCRYPTION =
        Op::write(S3, "PutBucketEncryption", "s3:PutEncryptionConfiguration");
    S3_GET_BUCKET_ENCRYPTION =
        Op::read(S3, "GetBucketEncryption", "s3:GetEncryptionConfiguration");
    S3_PUT_PUBLIC_ACCESS_BLOCK =
        Op::write(S3, "PutPublicAccessBlock", "s3:PutBucketPublicAccessBlock");
    S3_GET_PUBLIC_ACCESS_BLOCK =
        Op::read(S3, "GetPublicAccessBlock", "s3:GetBucketPublicAccessBlock");
    /// Removing a bucket's block is authorized as putting one.
    S3_DELETE_PUBLIC_ACCESS_BLOCK =
        Op::write(S3, "DeletePublicAccessBlock", "s3:PutBucketPublicAccessBlock");
    S3_PUT_BUCKET_POLICY = Op::write(S3, "PutBucketPolicy", "s3:PutBucketPolicy");
    S3_GET_BUCKET_POLICY = Op::read(S3, "GetBucketPolicy", "s3:GetBucketPolicy");
    S3_PUT_OBJECT_LOCK_CONFIGURATION = Op::write(
        S3,
        "PutObjectLockConfiguration",
        "s3:PutBucketObjectLockConfiguration",
    );
    S3_GET_OBJECT_LOCK_CONFIGURATION = Op::read(
        S3,
        "GetObjectLockConfiguration",
        "s3:GetBucketObjectLockConfiguration",
    );

    // ---- KMS: the evidence bucket's key
    KMS_DESCRIBE_KEY = Op::read(Kms, "DescribeKey", "kms:DescribeKey");
    KMS_CREATE_KEY = Op::write(Kms, "CreateKey", "kms:CreateKey");
    KMS_CREATE_ALIAS = Op::write(Kms, "CreateAlias", "kms:CreateAlias");
    // ---- KMS: the asymmetric key that signs evidence manifests
    KMS_SIGN = Op::read(Kms, "Sign", "kms:Sign");
    KMS_VERIFY = Op::read(Kms, "Verify", "kms:Verify");

    // ---- STS: who cordon runs as (approvals are journaled with it)
    STS_GET_CALLER_IDENTITY = Op::read(Sts, "GetCallerIdentity", "sts:GetCallerIdentity");
    /// Acting on a finding from another account, through a role there.
    STS_ASSUME_ROLE = Op::write(Sts, "AssumeRole", "sts:AssumeRole");

    // ---- IAM tags: the protected-resource guard reads them before planning changes
    IAM_LIST_USER_TAGS = Op::read(Iam, "ListUserTags", "iam:ListUserTags");
    IAM_LIST_ROLE_TAGS = Op::read(Iam, "ListRoleTags", "iam:ListRoleTags");

    // ---- IAM: `cordon doctor` asks the policy simulator about the caller
    /// The path of the role behind an assumed-role caller.
    IAM_GET_ROLE = Op::read(Iam, "GetRole", "iam:GetRole");
    IAM_SIMULATE_PRINCIPAL_POLICY =
        Op::read(Iam, "SimulatePrincipalPolicy", "iam:SimulatePrincipalPolicy");

    // ---- SNS: `notify`, on its own bucket (never EC2's)
    SNS_GET_TOPIC_ATTRIBUTES = Op::read(Sns, "GetTopicAttributes", "sns:GetTopicAttributes");
    SNS_PUBLISH = Op::write(Sns, "Publish", "sns:Publish");

    // ---- GuardDuty: intake
    GUARDDUTY_LIST_DETECTORS = Op::read(GuardDuty, "ListDetectors", "guardduty:ListDetectors");
    GUARDDUTY_LIST_FINDINGS = Op::read(GuardDuty, "ListFindings", "guardduty:ListFindings");
    GUARDDUTY_GET_FINDINGS = Op::read(GuardDuty, "GetFindings", "guardduty:GetFindings");

    // ---- SSM: the pause switch (`--pause-parameter`)
    SSM_GET_PARAMETER = Op::read(Ssm, "GetParameter", "ssm:GetParameter");

    // ---- SSM Run Command: `capture-memory`
    /// Each call runs the acquisition again: never re-sent by the SDK (the
    /// handler journals an intent with a marker first, and reads
    /// `ListCommands` for it before sending again).
    SSM_SEND_COMMAND = Op::write(Ssm, "SendCommand", "ssm:SendCommand").send_once();
    SSM_GET_COMMAND_INVOCATION =
        Op::read(Ssm, "GetCommandInvocation", "ssm:GetCommandInvocation");
    /// The instance's commands, read to find one sent by an attempt (or a
    /// process) that never heard the answer, by the marker in its comment.
    SSM_LIST_COMMANDS = Op::read(Ssm, "ListCommands", "ssm:ListCommands");
    /// Stops a command still running past its time budget; cancelling twice
    /// is harmless, so the SDK may retry it.
    SSM_CANCEL_COMMAND = Op::write(Ssm, "CancelCommand", "ssm:CancelCommand");

    // ---- Step Functions: the approver's answer to an approval wait
    //      (`cordon approve --task-token`; never the Lambda's role)
    STATES_SEND_TASK_SUCCESS = Op::write(StepFunctions, "SendTaskSuccess", "states:SendTaskSuccess");
    STATES_SEND_TASK_FAILURE = Op::write(StepFunctions, "SendTaskFailure", "states:SendTaskFailure");

    // ---- Detective: enrichment
    DETECTIVE_LIST_GRAPHS = Op::read(Detective, "ListGraphs", "detective:ListGraphs");
    DETECTIVE_LIST_INVESTIGATIONS =
        Op::read(Detective, "ListInvestigations", "detective:ListInvestigations");
    DETECTIVE_GET_INVESTIGATION =
        Op::read(Detective, "GetInvestigation", "detective:GetInvestigation");
    DETECTIVE_START_INVESTIGATION =
        Op::write(Detective, "StartInvestigation", "detective:StartInvestigation");
    DETECTIVE_LIST_INDICATORS = Op::read(Detective, "ListIndicators", "detective:ListIndicators");
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;
    use crate::client::is_read_only;

    /// S3's IAM actions are named after resources, not API operations.
    const S3_ACTION_NAMES: [(&str, &str); 13] = [
        ("GetObject", "GetObjectVersion"),
        ("HeadObject", "GetObjectVersion"),
        ("HeadObject", "GetObject"),
        ("ListObjectVersions", "ListBucketVersions"),
        ("ListObjectsV2", "ListBucket"),
        ("HeadBucket", "ListBucket"),
        ("PutBucketEncryption", "PutEncryptionConfiguration"),
        ("GetBucketEncryption", "GetEncryptionConfiguration"),
        ("PutPublicAccessBlock", "PutBucketPublicAccessBlock"),
        ("GetPublicAccessBlock", "GetBucketPublicAccessBlock"),
        ("DeletePublicAccessBlock", "PutBucketPublicAccessBlock"),
        (
            "PutObjectLockConfiguration",
            "PutBucketObjectLockConfiguration",
        ),
        (
            "GetObjectLockConfiguration",
            "GetBucketObjectLockConfiguration",
        ),
    ];

    #[test]
    fn only_creations_without_an_idempotency_token_are_sent_once() {
        let once: BTreeSet<&str> = ALL
            .iter()
            .filter(|op| op.send_once)
            .map(|op| op.name)
            .collect();
        assert_eq!(
            once,
            BTreeSet::from([
                "CreateAccessKey",
                "CreateSecurityGroup",
                "CreateSnapshot",
                "SendCommand"
            ])
        );
        assert!(ALL.iter().all(|op| !op.send_once || op.mutating));
        let transfers: BTreeSet<&str> = ALL
            .iter()
            .filter(|op| op.class == OpClass::Transfer)
            .map(|op| op.name)
            .collect();
        assert_eq!(transfers, BTreeSet::from(["GetObject", "PutObject"]));
    }

    #[test]
    fn every_iam_action_is_service_colon_operation() {
        for op in ALL {
            let (prefix, action) = op
                .iam_action
                .split_once(':')
                .unwrap_or_else(|| panic!("{op:?}: IAM action has no `service:` prefix"));
            assert_eq!(prefix, op.service.iam_prefix(), "{op:?}");
            assert!(
                action.starts_with(|c: char| c.is_ascii_uppercase())
                    && action.chars().all(|c| c.is_ascii_alphanumeric()),
                "{op:?}: `{action}` is not an IAM action name"
            );
            let renamed = op.service == Service::S3 && S3_ACTION_NAMES.contains(&(op.name, action));
            assert!(
                action == op.name || renamed,
                "{op:?}: IAM action `{action}` differs from the operation without a documented reason"
            );
        }
    }

    #[test]
    fn implied_permissions_are_iam_actions_with_reasons() {
        for op in ALL {
            for implied in op.implied {
                let (prefix, action) = implied.iam_action.split_once(':').unwrap_or_default();
                assert!(
                    Service::ALL.iter().any(|s| s.iam_prefix() == prefix) && !action.is_empty(),
                    "{op:?}"
                );
                assert_ne!(implied.iam_action, op.iam_action, "{op:?}");
                assert!(!implied.reason.is_empty(), "{op:?}");
            }
        }
        assert_eq!(
            S3_PUT_OBJECT.iam_actions().collect::<Vec<_>>(),
            ["s3:PutObject", "kms:GenerateDataKey"]
        );
    }

    #[test]
    fn rows_are_distinct_and_mutating_matches_the_name() {
        let mut seen = BTreeSet::new();
        for op in ALL {
            assert!(
                seen.insert((op.service, op.name, op.iam_action)),
                "{op:?} twice"
            );
            assert_eq!(op.mutating, !is_read_only(op.name), "{op:?}");
        }
    }

    #[test]
    fn ec2_rows_draw_on_the_published_buckets() {
        let expected = |op: &Op| match op.name {
            "CreateTags" => Bucket::Ec2CreateTags,
            "AuthorizeSecurityGroupIngress" | "RevokeSecurityGroupIngress" => {
                Bucket::Ec2ResourceIntensive
            }
            "ModifyNetworkInterfaceAttribute"
            | "CreateSnapshot"
            | "CreateSnapshots"
            | "AssociateIamInstanceProfile"
            | "DisassociateIamInstanceProfile" => Bucket::Ec2Operation(op.name),
            _ if op.mutating => Bucket::Ec2Mutating,
            _ => Bucket::Ec2NonMutating,
        };
        let ec2: Vec<&&Op> = ALL.iter().filter(|op| op.service == Service::Ec2).collect();
        assert!(ec2.len() > 10);
        for op in ec2 {
            assert_eq!(op.bucket, expected(op), "{op:?}");
        }
        // The published sizes of the buckets used.
        let sizes = [
            (EC2_DESCRIBE_INSTANCES, 100, 20),
            (EC2_MODIFY_INSTANCE_ATTRIBUTE, 50, 5),
            (EC2_AUTHORIZE_SECURITY_GROUP_INGRESS, 50, 5),
            (EC2_MODIFY_NETWORK_INTERFACE_ATTRIBUTE, 100, 5),
            (EC2_CREATE_SNAPSHOT, 100, 5),
            (EC2_CREATE_TAGS, 100, 10),
        ];
        for (op, capacity, refill) in sizes {
            assert_eq!(op.bucket.capacity(), capacity, "{op:?}");
            assert_eq!(op.bucket.refill_per_second(), refill, "{op:?}");
        }
    }

    #[test]
    fn other_services_draw_on_their_own_buckets_never_ec2s() {
        for op in ALL.iter().filter(|op| op.service != Service::Ec2) {
            assert_eq!(op.bucket, Bucket::Service(op.service), "{op:?}");
        }
        assert_eq!(SNS_PUBLISH.bucket, Bucket::Service(Service::Sns));
        assert_eq!(
            SNS_GET_TOPIC_ATTRIBUTES.bucket,
            Bucket::Service(Service::Sns)
        );
        assert_ne!(SNS_PUBLISH.bucket, S3_PUT_OBJECT.bucket);
    }

    #[test]
    fn every_service_has_rows_and_distinct_prefixes() {
        let prefixes: BTreeSet<&str> = Service::ALL.iter().map(|s| s.iam_prefix()).collect();
        assert_eq!(prefixes.len(), Service::ALL.len());
        for service in Service::ALL {
            assert!(
                ALL.iter().any(|op| op.service == service),
                "{service:?} has no row"
            );
        }
        assert_eq!(
            EC2_MODIFY_NETWORK_INTERFACE_ATTRIBUTE.counter_key(),
            "EC2.ModifyNetworkInterfaceAttribute"
        );
    }
}
