//! AWS identifier formats (AWS-NOTES, "Identifier formats").
//!
//! Everything in a finding is attacker-influenced. An id a step uses reaches
//! an API call, a Describe filter (where `*` and `?` are wildcards), a local
//! path, an S3 key, a tag or a policy, so the planner checks each one against
//! its AWS format before a plan exists: `i-0123/../../x`, `eni-0aaa"}]}` or an
//! instance id of `*` never get that far. The newtypes below can only be built
//! from a well-formed value, so code holding one needs no second check.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize};

use crate::text::preview;

/// The identifier a value was expected to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IdKind {
    Instance,
    NetworkInterface,
    Volume,
    Snapshot,
    SecurityGroup,
    Subnet,
    Vpc,
    Image,
    IamInstanceProfileAssociation,
    AccessKey,
    UserName,
    RoleName,
    /// A managed policy's name (cordon's own, from a playbook).
    PolicyName,
    Account,
    Region,
    Partition,
    InstanceProfileArn,
    RoleArn,
    FindingId,
    /// A GuardDuty detector id (a finding's `service.detectorId`).
    Detector,
    /// An S3 bucket name (a finding's bucket, which a step acts on).
    BucketName,
}

/// Partitions an ARN or a finding may name.
pub const PARTITIONS: &[&str] = &[
    "aws",
    "aws-cn",
    "aws-us-gov",
    "aws-iso",
    "aws-iso-b",
    "aws-iso-e",
    "aws-iso-f",
    "aws-eusc",
];

impl IdKind {
    /// What the value should have been, for messages: "an EC2 instance id".
    pub fn name(self) -> &'static str {
        use IdKind::*;
        match self {
            Instance => "an EC2 instance id",
            NetworkInterface => "a network interface id",
            Volume => "an EBS volume id",
            Snapshot => "an EBS snapshot id",
            SecurityGroup => "a security group id",
            Subnet => "a subnet id",
            Vpc => "a VPC id",
            Image => "an AMI id",
            IamInstanceProfileAssociation => "an instance profile association id",
            AccessKey => "an access key id",
            UserName => "an IAM user name",
            RoleName => "an IAM role name",
            PolicyName => "an IAM policy name",
            Account => "an AWS account id",
            Region => "an AWS region",
            Partition => "an AWS partition",
            InstanceProfileArn => "an instance profile ARN",
            RoleArn => "an IAM role ARN",
            FindingId => "a finding id",
            Detector => "a GuardDuty detector id",
            BucketName => "an S3 bucket name",
        }
    }

    /// The format, for messages.
    pub fn expected(self) -> &'static str {
        use IdKind::*;
        match self {
            Instance => "`i-` and 8 or 17 lowercase hex digits",
            NetworkInterface => "`eni-` and 8 or 17 lowercase hex digits",
            Volume => "`vol-` and 8 or 17 lowercase hex digits",
            Snapshot => "`snap-` and 8 or 17 lowercase hex digits",
            SecurityGroup => "`sg-` and 8 or 17 lowercase hex digits",
            Subnet => "`subnet-` and 8 or 17 lowercase hex digits",
            Vpc => "`vpc-` and 8 or 17 lowercase hex digits",
            Image => "`ami-` and 8 or 17 lowercase hex digits",
            IamInstanceProfileAssociation => "`iip-assoc-` and 8 or 17 lowercase hex digits",
            AccessKey => "`AKIA` or `ASIA` and 16 upper-case letters or digits",
            UserName | RoleName => "1 to 64 of A-Z a-z 0-9 + = , . @ _ -",
            PolicyName => "1 to 128 of A-Z a-z 0-9 + = , . @ _ -",
            Account => "12 digits",
            Region => "a region name such as `us-east-1`",
            Partition => "aws, aws-cn, aws-us-gov or an ISO partition",
            InstanceProfileArn => {
                "arn:PARTITION:iam::ACCOUNT:instance-profile/[PATH/]NAME, names and path segments of A-Z a-z 0-9 + = , . @ _ -"
            }
            RoleArn => {
                "arn:PARTITION:iam::ACCOUNT:role/[PATH/]NAME, names and path segments of A-Z a-z 0-9 + = , . @ _ -"
            }
            FindingId => "1 to 128 of A-Z a-z 0-9 . _ : -",
            Detector => "32 lowercase letters or digits",
            BucketName => {
                "3 to 63 of a-z 0-9 . -, starting and ending with a letter or digit, no `..`, not an IP address"
            }
        }
    }

    /// Whether `text` has this format.
    pub fn matches(self, text: &str) -> bool {
        use IdKind::*;
        match self {
            Detector => {
                text.len() == 32
                    && text
                        .bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
            }
            BucketName => bucket_name(text),
            Instance => ec2_id(text, "i"),
            NetworkInterface => ec2_id(text, "eni"),
            Volume => ec2_id(text, "vol"),
            Snapshot => ec2_id(text, "snap"),
            SecurityGroup => ec2_id(text, "sg"),
            Subnet => ec2_id(text, "subnet"),
            Vpc => ec2_id(text, "vpc"),
            Image => ec2_id(text, "ami"),
            IamInstanceProfileAssociation => ec2_id(text, "iip-assoc"),
            AccessKey => {
                text.len() == 20
                    && (text.starts_with("AKIA") || text.starts_with("ASIA"))
                    && text[4..]
                        .bytes()
                        .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
            }
            UserName | RoleName => iam_name(text, 64),
            PolicyName => iam_name(text, 128),
            Account => text.len() == 12 && text.bytes().all(|b| b.is_ascii_digit()),
            Region => region(text),
            Partition => PARTITIONS.contains(&text),
            InstanceProfileArn => iam_arn(text, "instance-profile", 128),
            RoleArn => iam_arn(text, "role", 64),
            FindingId => {
                (1..=128).contains(&text.len())
                    && text.bytes().all(|b| {
                        b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-')
                    })
            }
        }
    }

    /// `Ok` when `text` has this format, else an error showing (escaped) what it was.
    pub fn check(self, text: &str) -> Result<(), IdError> {
        if self.matches(text) {
            Ok(())
        } else {
            Err(IdError {
                kind: self,
                shown: preview(text),
            })
        }
    }
}

/// A value that is not the identifier it should be.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{shown} is not {} (expected {})", kind.name(), kind.expected())]
pub struct IdError {
    pub kind: IdKind,
    /// The value, escaped, quoted and cut to a preview: safe on a terminal.
    pub shown: String,
}

/// `prefix-` and 8 or 17 lowercase hex digits.
fn ec2_id(text: &str, prefix: &str) -> bool {
    let Some(hex) = text
        .strip_prefix(prefix)
        .and_then(|rest| rest.strip_prefix('-'))
    else {
        return false;
    };
    matches!(hex.len(), 8 | 17) && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// S3's naming rules for buckets made today (general purpose buckets): 3 to
/// 63 of `a-z 0-9 . -`, a letter or digit at both ends, no `..`, not an IPv4
/// address. Legacy us-east-1 names with capitals or `_` are refused: they
/// would reach a call, a key and a policy, and the planner takes only what
/// today's rules allow (a step on such a bucket is done by hand).
fn bucket_name(text: &str) -> bool {
    let edge = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let bytes = text.as_bytes();
    let looks_like_ip = text.split('.').count() == 4
        && text
            .split('.')
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
    (3..=63).contains(&bytes.len())
        && bytes.first().copied().is_some_and(edge)
        && bytes.last().copied().is_some_and(edge)
        && bytes.iter().all(|&b| edge(b) || b == b'.' || b == b'-')
        && !text.contains("..")
        && !looks_like_ip
}

/// IAM's character set for user, role and instance profile names and path segments.
fn iam_name(text: &str, max: usize) -> bool {
    (1..=max).contains(&text.len())
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+=,.@_-".contains(&b))
}

/// `us-east-1`, `us-gov-west-1`, `eu-isoe-west-1`: two letters, one or more
/// lowercase words, a number.
fn region(text: &str) -> bool {
    let parts: Vec<&str> = text.split('-').collect();
    text.len() <= 32
        && parts.len() >= 3
        && parts[0].len() == 2
        && parts[..parts.len() - 1]
            .iter()
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_lowercase()))
        && parts
            .last()
            .is_some_and(|n| (1..=2).contains(&n.len()) && n.bytes().all(|b| b.is_ascii_digit()))
}

/// `arn:PARTITION:iam::ACCOUNT:RESOURCE/[PATH/]NAME`. IAM itself allows any
/// printable ASCII in a path; this takes only the name character set, since
/// the name and path reach calls and policies.
fn iam_arn(text: &str, resource: &str, max_name: usize) -> bool {
    let mut parts = text.splitn(6, ':');
    let (Some("arn"), Some(partition), Some("iam"), Some(""), Some(account), Some(rest)) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return false;
    };
    let Some(path_and_name) = rest
        .strip_prefix(resource)
        .and_then(|r| r.strip_prefix('/'))
    else {
        return false;
    };
    let mut segments: Vec<&str> = path_and_name.split('/').collect();
    let Some(name) = segments.pop() else {
        return false;
    };
    IdKind::Partition.matches(partition)
        && IdKind::Account.matches(account)
        && path_and_name.len() <= 512 + max_name
        && iam_name(name, max_name)
        && segments.iter().all(|s| iam_name(s, 512))
}

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident => $kind:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, schemars::JsonSchema)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            /// The kind of id this type holds.
            pub const KIND: IdKind = IdKind::$kind;

            /// Checks `text` against the format.
            pub fn parse(text: &str) -> Result<Self, IdError> {
                Self::KIND.check(text).map(|()| Self(text.to_string()))
            }

            /// The id as AWS spells it, for a call or a message.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = IdError;

            fn try_from(text: String) -> Result<Self, IdError> {
                Self::KIND.check(&text).map(|()| Self(text))
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0
            }
        }

        impl std::ops::Deref for $name {
            type Target = str;

            fn deref(&self) -> &str {
                &self.0
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.pad(&self.0)
            }
        }

        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                self.0 == other
            }
        }

        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                self.0 == *other
            }
        }
    };
}

id_type!(
    /// `i-` and 8 or 17 lowercase hex digits.
    InstanceId => Instance
);
id_type!(
    /// `eni-` and 8 or 17 lowercase hex digits.
    EniId => NetworkInterface
);
id_type!(
    /// `vol-` and 8 or 17 lowercase hex digits.
    VolumeId => Volume
);
id_type!(
    /// `snap-` and 8 or 17 lowercase hex digits.
    SnapshotId => Snapshot
);
id_type!(
    /// `sg-` and 8 or 17 lowercase hex digits.
    SecurityGroupId => SecurityGroup
);
id_type!(
    /// `subnet-` and 8 or 17 lowercase hex digits.
    SubnetId => Subnet
);
id_type!(
    /// `vpc-` and 8 or 17 lowercase hex digits.
    VpcId => Vpc
);
id_type!(
    /// `ami-` and 8 or 17 lowercase hex digits.
    ImageId => Image
);
id_type!(
    /// `iip-assoc-` and 8 or 17 lowercase hex digits.
    IamInstanceProfileAssociationId => IamInstanceProfileAssociation
);
id_type!(
    /// `AKIA` (an IAM user's key) or `ASIA` (temporary STS credentials) and 16 more.
    AccessKeyId => AccessKey
);
id_type!(
    /// 1 to 64 of IAM's name characters; never a wildcard, a space or a newline.
    UserName => UserName
);
id_type!(
    /// 1 to 64 of IAM's name characters.
    RoleName => RoleName
);
id_type!(
    /// 12 digits.
    AccountId => Account
);
id_type!(
    /// A region name such as `us-east-1`.
    Region => Region
);
id_type!(
    /// `aws`, `aws-cn`, `aws-us-gov` or an ISO partition.
    Partition => Partition
);
id_type!(
    /// `arn:PARTITION:iam::ACCOUNT:instance-profile/[PATH/]NAME`.
    InstanceProfileArn => InstanceProfileArn
);
id_type!(
    /// `arn:PARTITION:iam::ACCOUNT:role/[PATH/]NAME`.
    RoleArn => RoleArn
);
id_type!(
    /// What GuardDuty calls a finding; it reaches tags and snapshot descriptions.
    FindingId => FindingId
);

/// `deserialize_with` checks for plan fields that stay `String` for the code
/// that reads them, so a hand-edited journal cannot smuggle in what the
/// planner would have refused.
pub(crate) mod checked {
    use super::*;

    fn one<'de, D: Deserializer<'de>>(d: D, kind: IdKind) -> Result<String, D::Error> {
        let text = String::deserialize(d)?;
        kind.check(&text).map_err(serde::de::Error::custom)?;
        Ok(text)
    }

    fn optional<'de, D: Deserializer<'de>>(d: D, kind: IdKind) -> Result<Option<String>, D::Error> {
        let text = Option::<String>::deserialize(d)?;
        if let Some(text) = &text {
            kind.check(text).map_err(serde::de::Error::custom)?;
        }
        Ok(text)
    }

    pub fn instance<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
        one(d, IdKind::Instance)
    }

    pub fn access_key<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
        one(d, IdKind::AccessKey)
    }

    pub fn user_name<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
        one(d, IdKind::UserName)
    }

    pub fn bucket_name<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
        one(d, IdKind::BucketName)
    }

    pub fn security_group<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
        one(d, IdKind::SecurityGroup)
    }

    pub fn snapshot<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
        one(d, IdKind::Snapshot)
    }

    pub fn account<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
        one(d, IdKind::Account)
    }

    pub fn region<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
        one(d, IdKind::Region)
    }

    pub fn optional_instance<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
        optional(d, IdKind::Instance)
    }

    pub fn optional_user_name<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
        optional(d, IdKind::UserName)
    }

    pub fn optional_role_name<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
        optional(d, IdKind::RoleName)
    }

    pub fn optional_instance_profile_arn<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<String>, D::Error> {
        optional(d, IdKind::InstanceProfileArn)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ec2_ids() {
        for ok in ["i-0123abcd", "i-0123456789abcdef0"] {
            assert!(InstanceId::parse(ok).is_ok(), "{ok}");
        }
        for bad in [
            "i-0123/../../x",
            "*",
            "i-*",
            "i-0123ABCD",
            "i-0123abc",
            "i-0123456789abcdef",
            "i-0123456789abcdef01",
            "i-0123abcd\n",
            " i-0123abcd",
            "eni-0123abcd",
            "",
        ] {
            assert!(InstanceId::parse(bad).is_err(), "{bad:?}");
        }
        assert!(EniId::parse("eni-0aaa\"}]}").is_err());
        assert!(EniId::parse("eni-0a1b2c3d4e5f60711").is_ok());
        assert!(VolumeId::parse("vol-0a1b2c3d").is_ok());
        assert!(SnapshotId::parse("snap-0a1b2c3d4e5f60711").is_ok());
        assert!(SecurityGroupId::parse("sg-0a1b2c3d").is_ok());
        assert!(SecurityGroupId::parse("GeneratedFindingSecurityId").is_err());
        assert!(SubnetId::parse("subnet-0a1b2c3d").is_ok());
        assert!(VpcId::parse("vpc-0a1b2c3d").is_ok());
        assert!(ImageId::parse("ami-99999999").is_ok());
        assert!(IamInstanceProfileAssociationId::parse("iip-assoc-0a1b2c3d4e5f60711").is_ok());
        assert!(IamInstanceProfileAssociationId::parse("iip-0a1b2c3d").is_err());
    }

    #[test]
    fn bucket_names() {
        for ok in [
            "abc",
            "evidence-bucket-2024",
            "my.bucket.example",
            "0-9",
            &"b".repeat(63),
        ] {
            assert!(IdKind::BucketName.matches(ok), "{ok}");
        }
        for bad in [
            "ab",
            &"b".repeat(64),
            "My-Bucket",
            "under_score",
            "-leading",
            "trailing-",
            ".dot",
            "dot.",
            "two..dots",
            "192.168.5.4",
            "bucket/../x",
            "bucket*",
            "bucket\n",
            "buck et",
            "",
        ] {
            assert!(!IdKind::BucketName.matches(bad), "{bad:?}");
        }
        // Four dotted parts that are not all digits are a name, not an address.
        assert!(IdKind::BucketName.matches("a.168.5.4"));
    }

    #[test]
    fn access_keys() {
        assert!(AccessKeyId::parse("AKIAEXAMPLEDEPLOY042").is_ok());
        assert!(AccessKeyId::parse("ASIAEXAMPLETEMP00817").is_ok());
        for bad in [
            "AKIA*",
            "AKIAexampledeploy042",
            "AIDAEXAMPLEDEPLOY042",
            "AKIAEXAMPLEDEPLOY04",
            "AKIAEXAMPLEDEPLOY0420",
            "GeneratedFindingAccessKeyId",
        ] {
            assert!(AccessKeyId::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn iam_names() {
        for ok in ["alice", "deploy-bot", "a+b=c,d.e@f_g-h", &"x".repeat(64)] {
            assert!(UserName::parse(ok).is_ok(), "{ok}");
            assert!(RoleName::parse(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "*",
            "alice\nmallory",
            "a b",
            "a/b",
            "ålice",
            &"x".repeat(65),
        ] {
            assert!(UserName::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn accounts_regions_partitions() {
        assert!(AccountId::parse("111122223333").is_ok());
        for bad in ["11112222333", "1111222233334", "11112222333a", "*"] {
            assert!(AccountId::parse(bad).is_err(), "{bad}");
        }
        for ok in [
            "us-east-1",
            "us-gov-west-1",
            "cn-north-1",
            "ap-southeast-5",
            "eu-isoe-west-1",
            "us-isob-east-1",
        ] {
            assert!(Region::parse(ok).is_ok(), "{ok}");
        }
        for bad in [
            "us-east",
            "../../etc",
            "US-EAST-1",
            "us-east-1\n",
            "useast-1",
            "us-east-123",
            "*",
        ] {
            assert!(Region::parse(bad).is_err(), "{bad:?}");
        }
        assert!(Partition::parse("aws-us-gov").is_ok());
        assert!(Partition::parse("aws-mars").is_err());
    }

    #[test]
    fn arns() {
        for ok in [
            "arn:aws:iam::111122223333:instance-profile/web-app-profile",
            "arn:aws-cn:iam::111122223333:instance-profile/path/to/web",
        ] {
            assert!(InstanceProfileArn::parse(ok).is_ok(), "{ok}");
        }
        for bad in [
            "arn:aws:iam::111122223333:example/instance/profile",
            "arn:aws:iam::111122223333:instance-profile/",
            "arn:aws:iam::111122223333:instance-profile/*",
            "arn:aws:iam::1111:instance-profile/web",
            "arn:aws:iam:us-east-1:111122223333:instance-profile/web",
            "arn:aws:iam::111122223333:role/web",
            "arn:aws:iam::111122223333:instance-profile/a//b",
        ] {
            assert!(InstanceProfileArn::parse(bad).is_err(), "{bad}");
        }
        assert!(RoleArn::parse("arn:aws:iam::111122223333:role/service-role/app").is_ok());
        assert!(
            RoleArn::parse(&format!(
                "arn:aws:iam::111122223333:role/{}",
                "r".repeat(65)
            ))
            .is_err()
        );
    }

    #[test]
    fn finding_ids() {
        for ok in [
            "8ec6a1b2c3d4e5f60718293a4b5c6d7e",
            "f-user",
            "6a7e8feb-b491-4cf7-a9f1-bf3703467718",
        ] {
            assert!(FindingId::parse(ok).is_ok(), "{ok}");
        }
        for bad in ["", "a/b", "a b", "x\n", &"x".repeat(129)] {
            assert!(FindingId::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn errors_name_the_format_and_show_the_value_escaped() {
        let err = InstanceId::parse("i-0123\n/../x").unwrap_err();
        assert_eq!(
            err.to_string(),
            "\"i-0123\\n/../x\" is not an EC2 instance id (expected `i-` and 8 or 17 lowercase hex digits)"
        );
    }

    #[test]
    fn serde_round_trip_checks_the_format() {
        let id: InstanceId = serde_json::from_str("\"i-0123abcd\"").unwrap();
        assert_eq!(serde_json::to_string(&id).unwrap(), "\"i-0123abcd\"");
        assert!(serde_json::from_str::<InstanceId>("\"i-0123/../x\"").is_err());
    }
}
